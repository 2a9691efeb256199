"""Finding the cgroup hierarchies (mountinfo / directory) and a pid's cgroup in each."""

from __future__ import annotations

from pathlib import Path

import pytest

from procfs_view.cgroup.discovery import (
    DEFAULT_CGROUP_ROOT,
    CgroupMembership,
    Hierarchy,
    discover_layout,
    layout_from_directory,
    layout_from_mounts,
    parse_mountinfo,
    parse_proc_cgroup,
    read_membership,
)
from procfs_view.errors import CgroupDataError, ProcessGone
from tests.fixtures import FixtureHost

ROOT_LINE = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"
PROC_LINE = "23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw"

#: Debian 10 / CentOS 7 style: every controller its own hierarchy, cpu and cpuacct together.
V1_MOUNTINFO = "\n".join(
    [
        ROOT_LINE,
        PROC_LINE,
        "25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755",
        "26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:5 "
        "- cgroup cgroup rw,xattr,name=systemd",
        "29 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:8 "
        "- cgroup cgroup rw,cpu,cpuacct",
        "30 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:9 "
        "- cgroup cgroup rw,memory",
        "31 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:10 "
        "- cgroup cgroup rw,cpuset,clone_children",
        "32 25 0:30 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:11 "
        "- cgroup cgroup rw,blkio",
    ]
)
V2_MOUNTINFO = "\n".join(
    [
        ROOT_LINE,
        PROC_LINE,
        "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 "
        "- cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot",
    ]
)
HYBRID_MOUNTINFO = "\n".join(
    [
        V1_MOUNTINFO,
        "27 25 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:6 "
        "- cgroup2 cgroup2 rw,nsdelegate",
    ]
)


# -- parse_mountinfo -------------------------------------------------------------------------


def test_parse_mountinfo_pure_v1_keeps_only_cgroup_mounts() -> None:
    mounts = parse_mountinfo(V1_MOUNTINFO)
    assert [(fstype, point) for fstype, _, point, _ in mounts] == [
        ("cgroup", "/sys/fs/cgroup/systemd"),
        ("cgroup", "/sys/fs/cgroup/cpu,cpuacct"),
        ("cgroup", "/sys/fs/cgroup/memory"),
        ("cgroup", "/sys/fs/cgroup/cpuset"),
        ("cgroup", "/sys/fs/cgroup/blkio"),
    ]
    assert mounts[1][3] == frozenset({"rw", "cpu", "cpuacct"})
    assert all(root == "/" for _, root, _, _ in mounts)


def test_parse_mountinfo_pure_v2() -> None:
    assert parse_mountinfo(V2_MOUNTINFO) == [
        ("cgroup2", "/", "/sys/fs/cgroup", frozenset({"rw", "nsdelegate", "memory_recursiveprot"}))
    ]


def test_parse_mountinfo_optional_fields_before_separator() -> None:
    # Zero, one and several optional fields (shared:N master:N propagate_from:N unbindable).
    lines = [
        "30 25 0:28 / /a rw - cgroup cgroup rw,memory",
        "31 25 0:29 / /b rw shared:10 - cgroup cgroup rw,pids",
        "32 25 0:30 / /c rw shared:11 master:3 propagate_from:2 unbindable "
        "- cgroup cgroup rw,blkio",
    ]
    mounts = parse_mountinfo("\n".join(lines))
    assert [(point, sorted(options)) for _, _, point, options in mounts] == [
        ("/a", ["memory", "rw"]),
        ("/b", ["pids", "rw"]),
        ("/c", ["blkio", "rw"]),
    ]


def test_parse_mountinfo_unescapes_spaces_in_paths() -> None:
    line = (
        "40 25 0:40 /my\\040container /srv/cgroup\\040trees/memory\\011x rw "
        "- cgroup cgroup rw,memory"
    )
    ((_, root, point, _),) = parse_mountinfo(line)
    assert root == "/my container"
    assert point == "/srv/cgroup trees/memory\tx"


def test_parse_mountinfo_unescapes_backslash() -> None:
    line = "40 25 0:40 / /srv/a\\134b rw - cgroup2 cgroup2 rw"
    assert parse_mountinfo(line)[0][2] == "/srv/a\\b"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "40 25 0:40 / /x rw cgroup cgroup rw,memory",  # no separator
        "40 - cgroup cgroup rw,memory",  # separator too early
        "40 25 0:40 / /x rw - cgroup",  # truncated after the separator
    ],
)
def test_parse_mountinfo_ignores_malformed_lines(text: str) -> None:
    assert parse_mountinfo(text) == []


# -- layout_from_mounts ----------------------------------------------------------------------


def test_layout_pure_v1() -> None:
    layout = layout_from_mounts(parse_mountinfo(V1_MOUNTINFO))
    assert layout.kind == "v1"
    assert layout.unified is None
    cpu = layout.hierarchy_for("cpu")
    assert cpu is not None
    assert cpu is layout.hierarchy_for("cpuacct")  # co-mounted: one hierarchy
    assert cpu.controllers == frozenset({"cpu", "cpuacct"})
    assert cpu.mount_point == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert cpu.version == 1
    cpuset = layout.hierarchy_for("cpuset")
    assert cpuset is not None
    assert cpuset.controllers == frozenset({"cpuset"})  # clone_children is a flag
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.mount_point == Path("/sys/fs/cgroup/memory")
    assert layout.hierarchy_for("io") is None
    assert layout.hierarchy_for("pids") is None


def test_layout_pure_v2(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    layout = layout_from_mounts(parse_mountinfo(V2_MOUNTINFO), tmp_path)
    assert layout.kind == "v2"
    assert layout.v1 == ()
    assert layout.unified is not None
    assert layout.unified.version == 2
    assert layout.unified.mount_point == tmp_path  # /sys/fs/cgroup re-based onto tmp_path
    assert layout.hierarchy_for("memory") is layout.unified
    assert layout.hierarchy_for("cpuacct") is None  # cgroup2 has no cpuacct (lxcfs#593)
    assert "rdma" in layout.unified.controllers


def test_layout_hybrid_without_v2_controllers(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    layout = layout_from_mounts(parse_mountinfo(HYBRID_MOUNTINFO), tmp_path)
    assert layout.kind == "hybrid"
    assert layout.unified is not None
    assert layout.unified.mount_point == tmp_path / "unified"
    assert layout.unified.controllers == frozenset()
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.version == 1
    assert memory.mount_point == tmp_path / "memory"


def test_layout_hybrid_with_v2_controllers(tmp_path: Path) -> None:
    """cgroup_no_v1=memory,io: the v2 half owns them, v1 keeps the rest."""
    mountinfo = "\n".join(
        [
            ROOT_LINE,
            "29 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
            "31 25 0:29 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset",
            "27 25 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
        ]
    )
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("memory io\n")
    layout = layout_from_mounts(parse_mountinfo(mountinfo), tmp_path)
    assert layout.kind == "hybrid"
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.version == 2
    assert memory is layout.unified
    io = layout.hierarchy_for("io")
    assert io is not None
    assert io.version == 2
    cpu = layout.hierarchy_for("cpu")
    assert cpu is not None
    assert cpu.version == 1


def test_layout_v1_wins_a_controller_listed_by_both(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("memory\n")
    layout = layout_from_mounts(parse_mountinfo(HYBRID_MOUNTINFO), tmp_path)
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.version == 1


def test_layout_non_default_mount_points() -> None:
    """Old distributions and some container runtimes mount hierarchies at /cgroup/<name>."""
    mountinfo = "\n".join(
        [
            ROOT_LINE,
            "30 22 0:28 / /cgroup/memory rw,relatime - cgroup cgroup rw,memory",
            "31 22 0:29 / /cgroup/cpu rw,relatime - cgroup cgroup rw,cpuacct,cpu",
        ]
    )
    layout = layout_from_mounts(parse_mountinfo(mountinfo))
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.mount_point == Path("/cgroup/memory")
    cpu = layout.hierarchy_for("cpuacct")
    assert cpu is not None
    assert cpu.mount_point == Path("/cgroup/cpu")
    assert cpu.controllers == frozenset({"cpu", "cpuacct"})


def test_layout_non_default_mount_points_are_not_rebased(tmp_path: Path) -> None:
    mountinfo = "30 22 0:28 / /cgroup/memory rw - cgroup cgroup rw,memory"
    layout = layout_from_mounts(parse_mountinfo(mountinfo), tmp_path)
    assert layout.v1[0].mount_point == Path("/cgroup/memory")


def test_layout_first_mount_of_a_hierarchy_wins() -> None:
    mountinfo = "\n".join(
        [
            "30 22 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
            "50 22 0:28 /lxc/ct /var/lib/ct/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
        ]
    )
    layout = layout_from_mounts(parse_mountinfo(mountinfo))
    assert len(layout.v1) == 1
    assert layout.v1[0].mount_point == Path("/sys/fs/cgroup/memory")


def test_layout_of_nothing() -> None:
    layout = layout_from_mounts(parse_mountinfo(ROOT_LINE))
    assert layout.kind == "none"
    assert layout.hierarchy_for("memory") is None


# -- Hierarchy.directory ---------------------------------------------------------------------


def test_directory_of_a_root_mount() -> None:
    hierarchy = Hierarchy(1, Path("/sys/fs/cgroup/memory"), frozenset({"memory"}))
    assert hierarchy.directory("/") == Path("/sys/fs/cgroup/memory")
    assert hierarchy.directory("/lxc/ct1") == Path("/sys/fs/cgroup/memory/lxc/ct1")


def test_directory_of_a_bind_mounted_subtree() -> None:
    """A container sees only its own subtree (bind mount or cgroup namespace)."""
    mountinfo = "40 25 0:28 /lxc/ct1 /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory"
    layout = layout_from_mounts(parse_mountinfo(mountinfo))
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.mount_root == "/lxc/ct1"
    assert memory.directory("/lxc/ct1") == Path("/sys/fs/cgroup/memory")
    assert memory.directory("/lxc/ct1/app") == Path("/sys/fs/cgroup/memory/app")


@pytest.mark.parametrize("path", ["/", "/lxc/ct2", "/lxc/ct10", "/lxc"])
def test_directory_outside_a_bind_mounted_subtree(path: str) -> None:
    hierarchy = Hierarchy(1, Path("/sys/fs/cgroup/memory"), frozenset({"memory"}), "/lxc/ct1")
    with pytest.raises(CgroupDataError, match="outside"):
        hierarchy.directory(path)


def test_directory_refuses_dot_dot() -> None:
    """Inside a cgroup namespace, cgroups above the namespace root show as /../x."""
    hierarchy = Hierarchy(2, Path("/sys/fs/cgroup"), frozenset())
    with pytest.raises(CgroupDataError):
        hierarchy.directory("/../other")


def test_directory_with_spaces() -> None:
    hierarchy = Hierarchy(2, Path("/srv/cgroup trees"), frozenset(), "/my container")
    assert hierarchy.directory("/my container/app 1") == Path("/srv/cgroup trees/app 1")


# -- /proc/<pid>/cgroup ----------------------------------------------------------------------


def test_parse_proc_cgroup_v1() -> None:
    text = (
        "12:pids:/lxc/ct1\n"
        "5:cpu,cpuacct:/lxc/ct1/app\n"
        "4:memory:/lxc/ct1\n"
        "1:name=systemd:/lxc/ct1/init.scope\n"
    )
    membership = parse_proc_cgroup(4242, text)
    assert membership.pid == 4242
    assert membership.unified is None
    assert membership.v1 == {
        "pids": "/lxc/ct1",
        "cpu": "/lxc/ct1/app",
        "cpuacct": "/lxc/ct1/app",
        "memory": "/lxc/ct1",
        "name=systemd": "/lxc/ct1",
    }


def test_parse_proc_cgroup_v2() -> None:
    membership = parse_proc_cgroup(7, "0::/system.slice/docker-abc.scope\n")
    assert membership.v1 == {}
    assert membership.unified == "/system.slice/docker-abc.scope"


def test_parse_proc_cgroup_hybrid() -> None:
    text = "3:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"
    membership = parse_proc_cgroup(7, text)
    assert membership.v1["memory"] == "/docker/abc"
    assert membership.unified == "/"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/lxc.payload.ct1/init.scope", "/lxc.payload.ct1"),
        ("/init.scope", "/"),
        ("/a/init.scope/b", "/a/init.scope/b"),  # only a trailing init.scope is pruned
        ("/a/xinit.scope", "/a/xinit.scope"),
    ],
)
def test_parse_proc_cgroup_prunes_init_scope(path: str, expected: str) -> None:
    assert parse_proc_cgroup(1, f"0::{path}\n").unified == expected
    assert parse_proc_cgroup(1, f"4:memory:{path}\n").v1["memory"] == expected


def test_parse_proc_cgroup_skips_malformed_lines() -> None:
    text = "garbage\n4:memory\n5:cpu:relative/path\n\n6:pids:/ok\n"
    assert parse_proc_cgroup(1, text).v1 == {"pids": "/ok"}


def test_parse_proc_cgroup_keeps_colons_in_paths() -> None:
    assert parse_proc_cgroup(1, "0::/machine.slice/a:b\n").unified == "/machine.slice/a:b"


def test_membership_path_in() -> None:
    membership = CgroupMembership(1, {"cpu": "/c", "cpuacct": "/c", "memory": "/m"}, "/u")
    cpu = Hierarchy(1, Path("/x"), frozenset({"cpu", "cpuacct"}))
    unified = Hierarchy(2, Path("/y"), frozenset({"memory"}))
    blkio = Hierarchy(1, Path("/z"), frozenset({"blkio"}))
    assert membership.path_in(cpu) == "/c"
    assert membership.path_in(unified) == "/u"
    assert membership.path_in(blkio) is None


def test_read_membership(tmp_path: Path) -> None:
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "cgroup").write_text("0::/ct/init.scope\n")
    assert read_membership(77, tmp_path).unified == "/ct"


def test_read_membership_of_a_vanished_pid(tmp_path: Path) -> None:
    with pytest.raises(ProcessGone) as caught:
        read_membership(999999, tmp_path)
    assert caught.value.pid == 999999


def test_read_membership_of_a_vanished_real_pid() -> None:
    # pid_max is at most 2**22 on Linux: this pid cannot exist.
    with pytest.raises(ProcessGone):
        read_membership(2**22 + 1)


# -- layout_from_directory / discover_layout on fixture trees --------------------------------


def test_layout_from_directory_v1(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v1")
    layout = layout_from_directory(host.cgroup)
    assert layout.kind == "v1"
    cpu = layout.hierarchy_for("cpuacct")
    assert cpu is not None
    assert cpu.mount_point == host.cgroup / "cpu,cpuacct"
    assert cpu.controllers == frozenset({"cpu", "cpuacct"})
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.mount_point == host.cgroup / "memory"


def test_layout_from_directory_v2(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")
    layout = layout_from_directory(host.cgroup)
    assert layout.kind == "v2"
    assert layout.unified is not None
    assert layout.unified.mount_point == host.cgroup
    assert layout.unified.controllers == frozenset({"cpuset", "cpu", "io", "memory", "pids"})


def test_layout_from_directory_hybrid(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "hybrid")
    layout = layout_from_directory(host.cgroup)
    assert layout.kind == "hybrid"
    assert layout.unified is not None
    assert layout.unified.mount_point == host.cgroup / "unified"
    assert all(h.mount_point.name != "unified" for h in layout.v1)


def test_layout_from_directory_skips_symlinks_and_files(tmp_path: Path) -> None:
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu").symlink_to("cpu,cpuacct")
    (tmp_path / "README").write_text("not a hierarchy")
    layout = layout_from_directory(tmp_path)
    assert [h.mount_point.name for h in layout.v1] == ["cpu,cpuacct"]


def test_layout_from_missing_directory(tmp_path: Path) -> None:
    assert layout_from_directory(tmp_path / "absent").kind == "none"


@pytest.mark.parametrize("kind", ["v1", "v2", "hybrid"])
def test_discover_layout_rebases_mount_points(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    layout = discover_layout(host.proc, host.cgroup)
    assert layout.kind == kind
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    expected = host.cgroup if kind == "v2" else host.cgroup / "memory"
    assert memory.mount_point == expected
    every = [*layout.v1, *([layout.unified] if layout.unified else [])]
    assert all(h.mount_point.is_relative_to(host.cgroup) for h in every)


def test_discover_layout_falls_back_to_the_directory(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(ROOT_LINE + "\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cgroup.controllers").write_text("memory\n")
    layout = discover_layout(proc, cgroup)
    assert layout.kind == "v2"
    assert layout.unified is not None
    assert layout.unified.mount_point == cgroup


def test_discover_layout_without_mountinfo(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    layout = discover_layout(tmp_path / "no-proc", tmp_path)
    assert layout.kind == "v1"


def test_discover_layout_default_root_keeps_paths(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(V1_MOUNTINFO + "\n")
    layout = discover_layout(tmp_path, DEFAULT_CGROUP_ROOT)
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.mount_point == Path("/sys/fs/cgroup/memory")


def test_discover_layout_with_a_mount_path_that_is_not_utf8(tmp_path: Path) -> None:
    """Any process can mount at a path of arbitrary bytes; discovery must still work."""
    (tmp_path / "self").mkdir()
    odd = b"99 22 0:99 / /mnt/\xff\xfe rw,relatime shared:99 - tmpfs tmpfs rw\n"
    (tmp_path / "self" / "mountinfo").write_bytes(odd + V1_MOUNTINFO.encode() + b"\n")
    layout = discover_layout(tmp_path, DEFAULT_CGROUP_ROOT)
    assert layout.kind == "v1"


def test_fixture_process_resolves_to_its_cgroup_directory(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v1")
    host.add_process(300, "/lxc/ct1/init.scope")
    layout = discover_layout(host.proc, host.cgroup)
    membership = read_membership(300, host.proc)
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    path = membership.path_in(memory)
    assert path == "/lxc/ct1"
    assert memory.directory(path) == host.cgroup / "memory" / "lxc" / "ct1"


# -- mounts hidden by later mounts (the DaemonSet binds the host's /sys/fs/cgroup) ----------

SYSFS_LINE = "1100 22 0:21 / /sys rw,nosuid,nodev,noexec - sysfs sysfs rw"

#: A privileged pod on a v2 node with a private cgroup namespace: the runtime mounted the
#: pod's own cgroup2 at /sys/fs/cgroup, then the hostPath volume bound the host's over it
#: (seen from the pod's cgroup namespace its root is above "/").
V2_POD_MOUNTINFO = "\n".join(
    [
        ROOT_LINE,
        SYSFS_LINE,
        "1200 1100 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw,nsdelegate",
        "1300 1200 0:26 /../../.. /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate",
    ]
)

#: The same on a v1 node: runc's tmpfs with binds of the pod's own cgroups, then the
#: host's tree bound recursively over that tmpfs.
V1_POD_MOUNTINFO = "\n".join(
    [
        ROOT_LINE,
        SYSFS_LINE,
        "30 1100 0:50 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs rw,mode=755",
        "31 30 0:28 /kubepods/burstable/podD/ctrD /sys/fs/cgroup/memory ro,nosuid "
        "- cgroup cgroup rw,memory",
        "40 30 0:23 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755",
        "41 40 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory",
    ]
)


def test_layout_v2_takes_the_mount_on_top_not_the_one_it_hides(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    layout = layout_from_mounts(parse_mountinfo(V2_POD_MOUNTINFO), tmp_path)
    assert layout.unified is not None
    assert layout.unified.mount_root == "/../../.."
    # Another pod's cgroup, as the daemon's cgroup namespace names it, is found.
    other_pod = "/../../../kubepods.slice/kubepods-podB.slice/cri-containerd-b.scope"
    assert layout.unified.directory(other_pod) == (
        tmp_path / "kubepods.slice/kubepods-podB.slice/cri-containerd-b.scope"
    )


def test_layout_v1_ignores_binds_inside_a_hidden_tmpfs() -> None:
    layout = layout_from_mounts(parse_mountinfo(V1_POD_MOUNTINFO))
    memory = layout.hierarchy_for("memory")
    assert memory is not None
    assert memory.mount_root == "/"
    assert memory.directory("/kubepods/besteffort/podE/ctrE") == Path(
        "/sys/fs/cgroup/memory/kubepods/besteffort/podE/ctrE"
    )


def test_layout_prefers_the_mount_that_sees_the_whole_hierarchy() -> None:
    # Both reachable: one container's cgroup bound at /sys/fs/cgroup/memory, the whole
    # hierarchy at /host/cgroup/memory. Every other container is only under the latter.
    text = "\n".join(
        [
            ROOT_LINE,
            SYSFS_LINE,
            "31 1100 0:28 /kubepods/podD/ctrD /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
            "51 22 0:28 / /host/cgroup/memory rw - cgroup cgroup rw,memory",
        ]
    )
    memory = layout_from_mounts(parse_mountinfo(text)).hierarchy_for("memory")
    assert memory is not None
    assert memory.mount_point == Path("/host/cgroup/memory")
    assert memory.mount_root == "/"
