"""The pure half of re-attaching (procfs_view.remount): mountinfo parsing and which binds
are candidates. Whether a candidate is dead is decided in its namespace (fstatvfs on the
mount answers ENOTCONN), which the integration tests exercise on real mounts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from procfs_view.daemon import takes_over_from_lxcfs
from procfs_view.mountinfo import parse_mountinfo, unescape
from procfs_view.remount import (
    LINEAGE_KEEP,
    MOUNT_ATTR__ATIME,
    MOUNT_ATTR_NOATIME,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    VIEW_ATTEMPTS,
    Bind,
    Scope,
    _stand_ins,
    attributes_for,
    binds_to_check,
    foreign_devices,
    fresh_device,
    lineage_path,
    ours,
    parse_lineage,
    read_lineage,
    record_lineage,
    views,
)

OURS = "fuse.procfs-view procfs-view ro,user_id=0,group_id=0,default_permissions,allow_other"

# A host namespace: our fresh mount (0:40), another instance's (dead or alive) mount point
# (0:39) with a bind of it, and an orphaned bind (0:38) whose mount point is gone.
HOST = f"""\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
22 27 0:21 / /proc rw,relatime - proc proc rw
64 27 0:40 / /var/lib/lxcfs ro,nosuid,nodev,relatime - {OURS}
70 27 0:39 / /srv/other\\040view ro,nosuid,nodev,relatime - {OURS}
71 27 0:39 /proc/meminfo /srv/meminfo ro,relatime - {OURS}
72 27 0:38 /proc/uptime /srv/uptime ro,relatime - {OURS}
"""

# A container: its own root, proc, our dead binds (0:38, an orphan), one already fresh,
# one hidden under a tmpfs, and a bind of another instance (0:39).
CONTAINER = f"""\
300 299 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
301 300 0:51 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
302 301 0:38 /proc/meminfo /proc/meminfo ro,nosuid,nodev,relatime shared:7 - {OURS}
303 301 0:38 /proc/cpuinfo /proc/cpuinfo ro,nosuid,nodev,noexec,noatime - {OURS}
304 301 0:40 /proc/stat /proc/stat ro,nosuid,nodev,relatime - {OURS}
305 301 0:38 /proc/uptime /proc/uptime ro,relatime - {OURS}
306 305 0:52 / /proc/uptime rw,relatime - tmpfs tmpfs rw
307 300 0:38 /sys/devices/system/cpu /sys/devices/system/cpu ro,relatime - {OURS}
308 301 0:39 /proc/swaps /proc/swaps ro,relatime - {OURS}
309 300 0:38 / /var/lib/lxcfs ro,relatime - {OURS}
310 301 0:53 /meminfo /proc/loadavg ro,relatime - fuse.lxcfs lxcfs rw
"""


def scope(
    mountpoint: str = "/var/lib/lxcfs",
    foreign: set[tuple[int, int]] | None = None,
    lineage: set[tuple[int, int]] | None = None,
) -> Scope:
    return Scope(
        mountpoint,
        (0, 40),
        frozenset(foreign or ()),
        None if lineage is None else frozenset(lineage),
    )


def test_parse_mountinfo_fields_and_escapes() -> None:
    entries = parse_mountinfo(HOST + "garbage line\n1 2 x:y / / rw - ext4 /dev/x rw\n")
    assert [entry.mount_id for entry in entries] == [27, 22, 64, 70, 71, 72]
    other = entries[3]
    assert other.mount_point == "/srv/other view"
    assert other.device == (0, 39)
    assert other.root == "/"
    assert other.parent_id == 27
    assert other.options == frozenset({"ro", "nosuid", "nodev", "relatime"})
    assert other.fstype == "fuse.procfs-view"
    assert other.source == "procfs-view"
    assert other.super_options == frozenset(OURS.split()[2].split(","))
    assert ours(other)
    assert not ours(entries[0])


def test_optional_fields_do_not_shift_the_rest() -> None:
    (entry,) = [e for e in parse_mountinfo(CONTAINER) if e.mount_id == 302]
    assert (entry.fstype, entry.source, entry.mount_point) == (
        "fuse.procfs-view",
        "procfs-view",
        "/proc/meminfo",
    )


def test_unescape_octal() -> None:
    assert unescape("/a\\040b\\011c\\012d\\134e") == "/a b\tc\nd\\e"
    assert unescape("/plain") == "/plain"


def test_fresh_and_foreign_devices_from_our_namespace() -> None:
    host = parse_mountinfo(HOST)
    assert fresh_device(host, "/var/lib/lxcfs") == (0, 40)
    assert fresh_device(host, "/nowhere") is None
    assert foreign_devices(host, "/var/lib/lxcfs") == {(0, 39)}


def test_candidates_in_a_container() -> None:
    entries = parse_mountinfo(CONTAINER)
    binds = binds_to_check(entries, scope(foreign={(0, 39)}), False)
    assert {bind.path: bind.root for bind in binds} == {
        "/proc/meminfo": "/proc/meminfo",
        "/proc/cpuinfo": "/proc/cpuinfo",
        "/sys/devices/system/cpu": "/sys/devices/system/cpu",
        "/var/lib/lxcfs": "/",
    }
    # Not: /proc/stat (already fresh), /proc/uptime (a tmpfs hides it), /proc/swaps
    # (another instance's), /proc/loadavg (not our filesystem), / and /proc.
    (meminfo,) = [bind for bind in binds if bind.path == "/proc/meminfo"]
    assert meminfo == Bind(302, "/proc/meminfo", "/proc/meminfo", (0, 38), meminfo.options)


def test_our_own_namespace_keeps_daemon_mount_points() -> None:
    binds = binds_to_check(parse_mountinfo(HOST), scope(), True)
    # /srv/other view is a daemon's mount point (root /): never taken over from here.
    assert [bind.path for bind in binds] == ["/srv/meminfo", "/srv/uptime"]
    binds = binds_to_check(parse_mountinfo(HOST), scope(foreign={(0, 39)}), True)
    assert [bind.path for bind in binds] == ["/srv/uptime"]


def test_no_candidates_when_everything_is_fresh() -> None:
    host = parse_mountinfo(HOST)
    fresh_only = [entry for entry in host if entry.device != (0, 39) and entry.mount_id != 72]
    assert binds_to_check(fresh_only, scope(), True) == []


def test_a_whole_filesystem_elsewhere_is_another_daemons_mount_point() -> None:
    entries = parse_mountinfo(CONTAINER)
    binds = binds_to_check(entries, scope("/run/other", foreign={(0, 39)}), False)
    assert "/var/lib/lxcfs" not in [bind.path for bind in binds]
    assert "/proc/meminfo" in [bind.path for bind in binds]


def test_attributes_keep_the_dead_binds_flags_and_read_only() -> None:
    assert attributes_for(frozenset({"rw", "relatime"})) == (MOUNT_ATTR_RDONLY, MOUNT_ATTR__ATIME)
    attr_set, attr_clr = attributes_for(frozenset({"ro", "nosuid", "nodev", "noexec", "noatime"}))
    assert attr_set == (
        MOUNT_ATTR_RDONLY
        | MOUNT_ATTR_NOSUID
        | MOUNT_ATTR_NODEV
        | MOUNT_ATTR_NOEXEC
        | MOUNT_ATTR_NOATIME
    )
    assert attr_clr == MOUNT_ATTR__ATIME
    assert attributes_for(frozenset()) == (MOUNT_ATTR_RDONLY, 0)


def test_with_other_instances_only_the_lineage_is_adopted() -> None:
    entries = parse_mountinfo(CONTAINER)
    assert binds_to_check(entries, scope(foreign={(0, 39)}, lineage=set()), False) == []
    binds = binds_to_check(entries, scope(foreign={(0, 39)}, lineage={(0, 38)}), False)
    assert {bind.path for bind in binds} == {
        "/proc/meminfo",
        "/proc/cpuinfo",
        "/sys/devices/system/cpu",
        "/var/lib/lxcfs",
    }
    # A recorded device still mounted at another mount point (a reused number) is not ours.
    binds = binds_to_check(entries, scope(foreign={(0, 39)}, lineage={(0, 39)}), False)
    assert binds == []


def test_lineage_file_keeps_the_last_devices(tmp_path: Path) -> None:
    path = lineage_path(tmp_path / "procfs-view.pid")
    assert path == tmp_path / "procfs-view.pid.devices"
    assert read_lineage(path) == frozenset()
    for minor in range(LINEAGE_KEEP + 3):
        record_lineage(path, (0, minor))
    record_lineage(path, (0, 5))  # again: moves to the end, not duplicated
    devices = parse_lineage(path.read_text())
    assert len(devices) == LINEAGE_KEEP
    assert devices[-1] == (0, 5)
    assert (0, 0) not in devices
    assert sorted(tmp_path.iterdir()) == [path]
    assert parse_lineage("0:38\ngarbage\n1:x\n 254:3 \n") == [(0, 38), (254, 3)]


def fake_proc(tmp_path: Path, processes: dict[int, tuple[str, str]]) -> Path:
    """A /proc with ``pid -> (mount namespace name, root)``: processes of one namespace
    share the inode of ns/mnt, as in the kernel."""
    proc = tmp_path / "proc"
    namespaces = tmp_path / "namespaces"
    namespaces.mkdir(parents=True)
    for pid, (namespace, root) in processes.items():
        (proc / str(pid) / "ns").mkdir(parents=True)
        canonical = namespaces / namespace
        canonical.touch()
        os.link(canonical, proc / str(pid) / "ns" / "mnt")
        (proc / str(pid) / "root").symlink_to(root)
    return proc


def test_a_view_whose_process_exits_is_entered_through_another(tmp_path: Path) -> None:
    """Once pids wrap, the lowest pid of a container may be a reader that exits before we
    are in: the view is then tried through its other processes, never another view's."""
    proc = fake_proc(
        tmp_path, {100: ("a", "/"), 101: ("b", "/"), 102: ("a", "/srv"), 103: ("a", "/")}
    )
    found = list(views(proc))
    assert [(view.root, view.pid) for view in found] == [("/", 100), ("/", 101), ("/srv", 102)]
    first = found[0]
    assert [view.pid for view in _stand_ins(first, proc)] == [100, 103]
    many = fake_proc(tmp_path / "many", {pid: ("a", "/") for pid in range(200, 210)})
    assert len(list(_stand_ins(next(views(many)), many))) == VIEW_ATTEMPTS


def test_a_worker_that_stops_in_a_view_fails_only_that_views_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One worker takes several views. When it hangs (killed after WORKER_TIMEOUT) in the
    second, that view's unanswered bind fails, the first view's answers stand, and a new
    worker takes the third; every descriptor is closed."""
    from procfs_view import remount

    def bind(path: str) -> remount.Bind:
        return remount.Bind(1, path, "/proc/meminfo", (0, 99), frozenset())

    opened: list[int] = []

    def prepared(pid: int, paths: list[str]) -> remount._Prepared:
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(2 + len(paths))]
        opened.extend(fds)
        view = remount.View(1000 + pid, "/", pid)
        return remount._Prepared(view, fds[0], fds[1], [bind(p) for p in paths], fds[2:], [])

    batch = [prepared(1, ["/a", "/b"]), prepared(2, ["/c", "/d"]), prepared(3, ["/e"])]
    calls: list[list[int]] = []

    def run_worker(
        views: list[remount.View], work: list[remount.ViewJobs]
    ) -> tuple[dict[tuple[int, int], tuple[str, int]], bool]:
        calls.append([view.pid for view in views])
        if len(calls) == 1:  # answers view 1, then the first bind of view 2, then hangs
            return {(0, 0): ("fixed", 0), (0, 1): ("alive", 0), (1, 0): ("fixed", 0)}, True
        return {(0, 0): ("stacked", 0)}, False

    monkeypatch.setattr(remount, "_run_worker", run_worker)
    outcomes = remount._fix_views(batch)
    assert calls == [[1, 2, 3], [3]]
    assert [(o.pid, o.path, o.status, o.error) for o in outcomes] == [
        (1, "/a", "fixed", 0),
        (1, "/b", "alive", 0),
        (2, "/c", "fixed", 0),
        (2, "/d", "failed", errno.ETIMEDOUT),
        (3, "/e", "stacked", 0),
    ]
    for fd in opened:
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)


def test_dead_lxcfs_binds_are_ours_only_where_lxcfs_served() -> None:
    """At LXCFS's mountpoint, or where its dead mount was just detached: a second
    instance or a test elsewhere leaves other nodes' LXCFS binds alone."""
    assert takes_over_from_lxcfs(Path("/var/lib/lxcfs"), frozenset())
    assert takes_over_from_lxcfs(Path("/srv/views"), frozenset({"fuse.lxcfs"}))
    assert not takes_over_from_lxcfs(Path("/srv/views"), frozenset({"fuse.procfs-view"}))
    assert not takes_over_from_lxcfs(Path("/srv/views"), frozenset())
