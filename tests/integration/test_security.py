"""Security properties of the mount (docs/security.md): read-only for everyone, one
cgroup's view never reaches another cgroup, and no file carries host-only data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procfs_view.cache import DEFAULT_TTL
from tests.cgroups import TestCgroup, test_cgroup, v1_kernel_counts_io_per_cgroup
from tests.integration.helpers import MIB, TIMEOUT, Daemon, kill_started, meminfo_kb

pytestmark = [pytest.mark.root, pytest.mark.fuse]

#: Tries every mutating call on the mount; prints {call: errno or "allowed"}.
MUTATE = r"""
import errno, json, os, sys
mnt = sys.argv[1]
f = os.path.join(mnt, "proc/meminfo")
d = os.path.join(mnt, "proc")
calls = {
    "open-write": lambda: os.open(f, os.O_WRONLY),
    "open-rdwr": lambda: os.open(f, os.O_RDWR),
    "open-append": lambda: os.open(f, os.O_WRONLY | os.O_APPEND),
    "open-trunc": lambda: os.open(f, os.O_RDONLY | os.O_TRUNC),
    "truncate": lambda: os.truncate(f, 0),
    "chmod": lambda: os.chmod(f, 0o666),
    "chown": lambda: os.chown(f, 1000, 1000),
    "utime": lambda: os.utime(f, (0, 0)),
    "create": lambda: os.open(os.path.join(d, "new"), os.O_WRONLY | os.O_CREAT, 0o644),
    "mkdir": lambda: os.mkdir(os.path.join(d, "newdir")),
    "rmdir": lambda: os.rmdir(os.path.join(mnt, "proc/pressure")),
    "unlink": lambda: os.unlink(f),
    "rename": lambda: os.rename(f, os.path.join(d, "renamed")),
    "link": lambda: os.link(f, os.path.join(d, "hardlink")),
    "symlink": lambda: os.symlink("/etc/passwd", os.path.join(d, "symlink")),
    "mknod": lambda: os.mkfifo(os.path.join(d, "fifo")),
    "setxattr": lambda: os.setxattr(f, "user.x", b"1"),
    "removexattr": lambda: os.removexattr(f, "user.x"),
}
result = {}
for name, call in calls.items():
    try:
        call()
        result[name] = "allowed"
    except OSError as error:
        result[name] = errno.errorcode.get(error.errno, str(error.errno))
print(json.dumps(result))
"""
REFUSED = {"EROFS", "EACCES", "EPERM", "ENOENT", "ENOTSUP", "EOPNOTSUPP", "ENODATA"}
#: ENOENT is only acceptable where the target does not exist (rmdir of a non-v2 tree).
MUST_BE_READ_ONLY = {"EROFS", "EACCES", "EPERM"}


def _refusals(argv_prefix: list[str], mountpoint: Path) -> dict[str, str]:
    out = subprocess.run(
        [*argv_prefix, sys.executable, "-c", MUTATE, str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    result: dict[str, str] = json.loads(out)
    return result


def _assert_all_refused(result: dict[str, str]) -> None:
    for call, outcome in result.items():
        assert outcome != "allowed", f"{call} succeeded on the mount"
        assert outcome in REFUSED, (call, outcome)
    for call in ("open-write", "open-rdwr", "truncate", "chmod", "chown", "create", "mkdir"):
        assert result[call] in MUST_BE_READ_ONLY, (call, result[call])


@pytest.mark.parametrize(
    "who",
    ["host-root", "userns-root"],
)
def test_mount_is_read_only_for_everyone(shared_mount: Daemon, who: str) -> None:
    """Root on the host, and root of a new user+mount namespace (what root in a container
    is), can change nothing: no write, mode, owner, time, entry or xattr."""
    before = shared_mount.path("proc/meminfo").read_bytes()
    entries = sorted(p.name for p in shared_mount.path("proc").iterdir())
    prefix = [] if who == "host-root" else ["unshare", "--user", "--map-root-user", "--mount"]
    if who == "userns-root":
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
        if probe.returncode != 0:
            pytest.skip(f"cannot create a user namespace here: {probe.stderr!r}")
    _assert_all_refused(_refusals(prefix, shared_mount.mountpoint))
    assert sorted(p.name for p in shared_mount.path("proc").iterdir()) == entries
    assert shared_mount.path("proc/meminfo").read_bytes()[:9] == before[:9]
    assert shared_mount.process.poll() is None


# -- no cross-cgroup views -----------------------------------------------------------------

#: "hold": open, print the content read through that handle, then wait for "read" on
#: stdin and print what the same (still open) handle reads from offset 0 again.
HOLDER = r"""
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(json.dumps(os.pread(fd, 65536, 0).decode()), flush=True)
sys.stdin.readline()
print(json.dumps(os.pread(fd, 65536, 0).decode()), flush=True)
"""


def test_concurrent_opens_of_one_path_each_get_their_own_numbers(shared_mount: Daemon) -> None:
    """Two cgroups hold the same path open at once: no handle (or content) is shared."""
    path = str(shared_mount.path("proc/meminfo"))
    with (
        test_cgroup(memory_limit=200 * MIB) as first,
        test_cgroup(memory_limit=300 * MIB) as second,
    ):
        holders = [
            (
                limit,
                cgroup.spawn(
                    [sys.executable, "-c", HOLDER, path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                ),
            )
            for cgroup, limit in ((first, 200), (second, 300), (first, 200), (second, 300))
        ]
        try:
            for limit, process in holders:
                assert process.stdout is not None
                text = json.loads(process.stdout.readline())
                assert meminfo_kb(text, "MemTotal") == limit * 1024
            for limit, process in holders:
                out, _ = process.communicate("read\n", timeout=TIMEOUT)
                assert meminfo_kb(json.loads(out), "MemTotal") == limit * 1024
        finally:
            for _, process in holders:
                kill_started(process)


#: Passes an open file over a Unix socket (SCM_RIGHTS). "send": open PATH, print what it
#: reads, send the fd. "recv": print "ready", receive the fd, print what it reads through
#: it, then what a fresh open of PATH gives the receiver itself.
FD_PASSING = r"""
import json, os, socket, sys
role, path, sock_path = sys.argv[1:4]
def content(fd):
    return os.pread(fd, 65536, 0).decode()
if role == "recv":
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    received = content(fds[0])
    own = os.open(path, os.O_RDONLY)
    print(json.dumps({"received": received, "own": content(own)}), flush=True)
else:
    fd = os.open(path, os.O_RDONLY)
    mine = content(fd)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(sock_path)
    socket.send_fds(client, [b"x"], [fd])
    print(json.dumps(mine), flush=True)
"""


def test_fd_passing_hands_over_the_openers_snapshot_only(
    shared_mount: Daemon, tmp_path: Path
) -> None:
    """A file opened in cgroup A and passed to a process in cgroup B reads A's snapshot,
    byte for byte (computed once, at A's open; never recomputed for B); B's own open gives
    B's numbers. Documented as acceptable in docs/security.md: A could send the bytes."""
    path = str(shared_mount.path("proc/meminfo"))
    sock = str(tmp_path / "fd.sock")
    with (
        test_cgroup(memory_limit=200 * MIB, cpus="0") as sender_cgroup,
        test_cgroup(memory_limit=300 * MIB, cpus="1") as receiver_cgroup,
    ):
        receiver = receiver_cgroup.spawn(
            [sys.executable, "-c", FD_PASSING, "recv", path, sock],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert receiver.stdout is not None
            assert receiver.stdout.readline().strip() == "ready"
            sent = json.loads(
                sender_cgroup.run([sys.executable, "-c", FD_PASSING, "send", path, sock])
            )
            got = json.loads(receiver.stdout.readline())
            assert receiver.wait(timeout=TIMEOUT) == 0
        finally:
            kill_started(receiver)
    assert meminfo_kb(sent, "MemTotal") == 200 * 1024
    assert got["received"] == sent  # the opener's snapshot, unchanged
    assert meminfo_kb(got["own"], "MemTotal") == 300 * 1024


#: A monitor whose worker thread opens the file and exits: print what it read, wait for a
#: line on stdin, then re-read through the same descriptor from offset 0 (as top does).
THREAD_OPENS = r"""
import os, sys, threading
opened = []
worker = threading.Thread(target=lambda: opened.append(os.open(sys.argv[1], os.O_RDONLY)))
worker.start()
worker.join()
print(os.pread(opened[0], 65536, 0).decode().splitlines()[0], flush=True)
sys.stdin.readline()
print(os.pread(opened[0], 65536, 0).decode().splitlines()[0], flush=True)
"""


def test_a_file_a_thread_opened_refreshes_for_its_process_after_the_thread_exits(
    shared_mount: Daemon,
) -> None:
    """FUSE names the calling thread; the file used to freeze at its last numbers once
    that thread had exited, though its process, in the same cgroups, went on reading it."""
    with test_cgroup(memory_limit=200 * MIB) as cgroup:
        monitor = cgroup.spawn(
            [sys.executable, "-c", THREAD_OPENS, str(shared_mount.path("proc/meminfo"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert monitor.stdin is not None
            assert monitor.stdout is not None
            assert meminfo_kb(monitor.stdout.readline(), "MemTotal") == 200 * 1024
            limit_file = "memory.max" if cgroup.version == 2 else "memory.limit_in_bytes"
            (cgroup.directory("memory") / limit_file).write_text(str(150 * MIB))
            time.sleep(2 * DEFAULT_TTL)  # past the render cache's copy
            monitor.stdin.write("again\n")
            monitor.stdin.flush()
            assert meminfo_kb(monitor.stdout.readline(), "MemTotal") == 150 * 1024
            assert monitor.wait(timeout=TIMEOUT) == 0
        finally:
            kill_started(monitor)


# -- nothing host-only ---------------------------------------------------------------------


def _read_in(cgroup: TestCgroup, mount: Daemon, relative: str) -> str:
    return cgroup.run(["cat", str(mount.path(relative))])


def _devices_used(cgroup: TestCgroup) -> set[tuple[int, int]]:
    """Devices with I/O in the cgroup's own accounting (v1 blkio throttle, v2 io.stat)."""
    used: set[tuple[int, int]] = set()
    if cgroup.version == 2:
        text = (cgroup.directory("io") / "io.stat").read_text()
        for line in text.splitlines():
            major, minor = line.split()[0].split(":")
            used.add((int(major), int(minor)))
        return used
    directory = cgroup.directory("blkio")
    for name in ("blkio.throttle.io_serviced_recursive", "blkio.io_serviced_recursive"):
        with_file = directory / name
        if not with_file.exists():
            continue
        for line in with_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and int(parts[2]) > 0:
                major, minor = parts[0].split(":")
                used.add((int(major), int(minor)))
    return used


def test_a_limited_cgroup_sees_no_host_only_data(shared_mount: Daemon) -> None:
    with test_cgroup(memory_limit=256 * MIB, cpus="1") as cgroup:
        meminfo = _read_in(cgroup, shared_mount, "proc/meminfo")
        total = meminfo_kb(meminfo, "MemTotal")
        assert total == 256 * 1024
        for line in meminfo.splitlines():
            key, _, rest = line.partition(":")
            fields = rest.split()
            # Swap is the container's own allowance; Hugepagesize is a page size; the
            # HugePages_* lines count pages.
            if fields[1:] == ["kB"] and key not in ("SwapTotal", "SwapFree", "Hugepagesize"):
                assert int(fields[0]) <= total, line

        cpuinfo = _read_in(cgroup, shared_mount, "proc/cpuinfo")
        processors = [
            line for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "processor"
        ]
        assert len(processors) == 1, processors  # only CPU 1, shown as processor 0
        stat = _read_in(cgroup, shared_mount, "proc/stat")
        assert [ln.split()[0] for ln in stat.splitlines() if ln.startswith("cpu")] == [
            "cpu",
            "cpu1",
        ]
        assert _read_in(cgroup, shared_mount, "sys/devices/system/cpu/online").strip() == "1"

        swaps = _read_in(cgroup, shared_mount, "proc/swaps").splitlines()
        host_devices = {
            line.split()[0] for line in Path("/proc/swaps").read_text().splitlines()[1:]
        }
        for line in swaps[1:]:
            assert line.split()[0] == "none", line
            assert line.split()[0] not in host_devices
        assert not any("/dev/" in line for line in swaps)

        diskstats = _read_in(cgroup, shared_mount, "proc/diskstats")
        shown = {(int(ln.split()[0]), int(ln.split()[1])) for ln in diskstats.splitlines()}
        if cgroup.version == 1 and not v1_kernel_counts_io_per_cgroup():
            # Nothing to show but the host's: the documented fallback (docs/security.md).
            assert len(shown) == len(Path("/proc/diskstats").read_text().splitlines())
        else:
            assert shown <= _devices_used(cgroup), (shown, diskstats)
