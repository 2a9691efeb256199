"""The cgroup reader on fixture trees: limits, cpusets, quotas, usage, I/O, bad input."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from procfs_view.cgroup import CgroupReader, discover_layout, read_membership
from procfs_view.cgroup import reader as reader_module
from procfs_view.cgroup.records import CpuTimes, MemoryStat
from procfs_view.errors import CgroupDataError, CgroupUnavailable, ServeHost
from tests.fixtures import FixtureHost

MIB = 1024 * 1024
KINDS = ["v1", "v2", "hybrid"]


def setup(tmp_path: Path, kind: str) -> tuple[FixtureHost, CgroupReader]:
    host = FixtureHost(tmp_path, kind)
    host.add_process(600, "/a/b", namespace="ct")
    return host, CgroupReader(discover_layout(host.proc, host.cgroup))


@pytest.mark.parametrize("kind", KINDS)
def test_memory_limit_is_min_over_ancestors(tmp_path: Path, kind: str) -> None:
    host, reader = setup(tmp_path, kind)
    host.set_memory("/a", 100 * MIB, 0)
    host.set_memory("/a/b", 300 * MIB, 5 * MIB)
    record = reader.memory(read_membership(600, host.proc))
    assert (record.limit, record.usage) == (100 * MIB, 5 * MIB)


@pytest.mark.parametrize("kind", KINDS)
def test_memory_unlimited(tmp_path: Path, kind: str) -> None:
    host, reader = setup(tmp_path, kind)
    host.set_memory("/a/b", None, 5 * MIB)
    assert reader.memory(read_membership(600, host.proc)).limit is None


def test_v1_limit_threshold_means_unlimited(tmp_path: Path) -> None:
    host, reader = setup(tmp_path, "v1")
    host.write("memory", "/a/b", {"memory.limit_in_bytes": 9223372036854775807})
    host.write("memory", "/a/b", {"memory.usage_in_bytes": 1})
    assert reader.memory(read_membership(600, host.proc)).limit is None


@pytest.mark.parametrize("kind", KINDS)
def test_memory_stat_is_read_afresh_each_time(tmp_path: Path, kind: str) -> None:
    """memory.stat's parse is memoized on its text: a changed file gives the new figures,
    and two cgroups with the same text get the same (correct) ones."""
    host, reader = setup(tmp_path, kind)
    host.add_process(601, "/c", namespace="ct2")
    host.set_memory("/a/b", 100 * MIB, 5 * MIB, stat={"file": 3 * MIB, "anon": 2 * MIB})
    host.set_memory("/c", 100 * MIB, 5 * MIB, stat={"file": 3 * MIB, "anon": 2 * MIB})
    first = reader.memory(read_membership(600, host.proc))
    assert (first.stat.file, first.stat.anon) == (3 * MIB, 2 * MIB)
    assert reader.memory(read_membership(601, host.proc)).stat == first.stat
    host.set_memory("/a/b", 100 * MIB, 6 * MIB, stat={"file": 4 * MIB, "anon": 2 * MIB})
    again = reader.memory(read_membership(600, host.proc))
    assert (again.stat.file, again.usage) == (4 * MIB, 6 * MIB)


def test_memory_stat_keys_are_in_record_field_order() -> None:
    """The reader builds MemoryStat positionally from its key lists: they must follow the
    record's fields, mandatory ones first."""
    fields = (*reader_module._MANDATORY_STAT_FIELDS, *reader_module._OPTIONAL_STAT_FIELDS)
    assert fields == MemoryStat._fields
    for version, names in (
        (1, reader_module._V1_MEMORY_STAT_KEYS),
        (2, reader_module._V2_MEMORY_STAT_KEYS),
    ):
        assert tuple(names) == reader_module._MANDATORY_STAT_FIELDS
        assert reader_module._STAT_KEYS[version][: len(names)] == list(names.values())


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_limit_is_a_data_error(tmp_path: Path, kind: str) -> None:
    host, reader = setup(tmp_path, kind)
    host.set_memory("/a/b", 100 * MIB, 0)
    name = "memory.max" if kind == "v2" else "memory.limit_in_bytes"
    host.write("memory", "/a/b", {name: "lots"})
    with pytest.raises(CgroupDataError, match="lots"):
        reader.memory(read_membership(600, host.proc))


@pytest.mark.parametrize("kind", KINDS)
def test_removed_cgroup_is_unavailable(tmp_path: Path, kind: str) -> None:
    host, reader = setup(tmp_path, kind)
    host.set_memory("/a/b", 100 * MIB, 0)
    membership = read_membership(600, host.proc)
    for child in host.cgroup_dir("memory", "/a/b").iterdir():
        child.unlink()
    host.cgroup_dir("memory", "/a/b").rmdir()
    with pytest.raises(CgroupUnavailable):
        reader.memory(membership)


@pytest.mark.parametrize("kind", KINDS)
def test_root_cgroup_is_the_host(tmp_path: Path, kind: str) -> None:
    host, reader = setup(tmp_path, kind)
    host.add_process(601, "/")
    with pytest.raises(ServeHost):
        reader.memory(read_membership(601, host.proc))


@pytest.mark.parametrize("kind", KINDS)
def test_cpuset_is_the_effective_list_then_the_requested_then_an_ancestor(
    tmp_path: Path, kind: str
) -> None:
    host, reader = setup(tmp_path, kind)
    membership = read_membership(600, host.proc)
    host.set_cpu("/a", cpus="2-3")
    host.set_cpu("/a/b", cpus="")
    assert reader.cpuset(membership) == (2, 3)
    host.set_cpu("/a/b", cpus="0,2")
    assert reader.cpuset(membership) == (0, 2)
    # What the kernel grants: a v2 child asking for 0-7 under a parent limited to 0-1
    # (a slice's AllowedCPUs=, a sibling's partition) runs on 0-1, and so must count them.
    effective = "cpuset.cpus.effective" if kind == "v2" else "cpuset.effective_cpus"
    host.write("cpuset", "/a/b", {"cpuset.cpus": "0-7", effective: "0-1"})
    assert reader.cpuset(membership) == (0, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_quota_is_min_over_ancestors(tmp_path: Path, kind: str) -> None:
    host, reader = setup(tmp_path, kind)
    membership = read_membership(600, host.proc)
    host.set_cpu("/a", quota=(50000, 100000))
    host.set_cpu("/a/b", quota=(400000, 100000))
    assert reader.cpu_quota(membership).cpus == pytest.approx(0.5)
    host.set_cpu("/a", quota=(400000, 200000))
    assert reader.cpu_quota(membership).cpus == pytest.approx(2.0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("host_root", [True, False])
def test_limits_on_the_hierarchy_root(tmp_path: Path, kind: str, host_root: bool) -> None:
    """The root of a cgroup namespace (or a bind-mounted subtree) may hold limits that bind
    every container below it; the host's root cgroup never holds any (the kernel refuses
    them), so its files are not read: even garbage there changes nothing."""
    host, reader = setup(tmp_path, kind)
    membership = read_membership(600, host.proc)
    host.set_cpu("/a/b", quota=(400000, 100000))
    host.set_memory("/a/b", 300 * MIB, 5 * MIB)
    root_quota = {"cpu.max": "100000 100000"} if kind == "v2" else {"cpu.cfs_quota_us": 100000}
    host.write("cpu", "/", root_quota)
    host.write("memory", "/", {"memory.max" if kind == "v2" else "memory.limit_in_bytes": MIB})
    for controller in ("cpu", "memory"):
        root = host.cgroup_dir(controller, "/")
        if kind == "v2":  # only a v2 root lacks cgroup.type
            (root / "cgroup.controllers").touch()
            if not host_root:
                (root / "cgroup.type").write_text("domain\n")
        elif host_root:  # only the real v1 root has cgroup.sane_behavior
            (root / "cgroup.sane_behavior").write_text("0\n")
    if host_root:
        for controller in ("cpu", "memory"):
            for name in [*root_quota, "memory.max", "memory.limit_in_bytes"]:
                if (host.cgroup_dir(controller, "/") / name).exists():
                    host.write(controller, "/", {name: "garbage"})
        assert reader.cpu_quota(membership).cpus == pytest.approx(4.0)
        assert reader.memory(membership).limit == 300 * MIB
    else:
        assert reader.cpu_quota(membership).cpus == pytest.approx(1.0)
        assert reader.memory(membership).limit == MIB


def test_v2_quota_max_and_v1_minus_one_mean_none(tmp_path: Path) -> None:
    host, reader = setup(tmp_path / "v2", "v2")
    host.write("cpu", "/a/b", {"cpu.max": "max 100000"})
    assert reader.cpu_quota(read_membership(600, host.proc)).cpus is None
    host1, reader1 = setup(tmp_path / "v1", "v1")
    host1.set_cpu("/a/b")
    assert reader1.cpu_quota(read_membership(600, host1.proc)).cpus is None


@pytest.mark.parametrize("kind", KINDS)
def test_cpu_usage(tmp_path: Path, kind: str) -> None:
    host, reader = setup(tmp_path, kind)
    host.set_cpu("/a/b", per_cpu_ns={0: (3 * 10**9, 10**9), 2: (10**9, 0)})
    usage = reader.cpu_usage(read_membership(600, host.proc))
    assert usage.total == CpuTimes(4 * 10**9, 10**9)
    if kind == "v2":
        assert usage.per_cpu is None
    else:
        assert usage.per_cpu is not None
        assert usage.per_cpu[0] == CpuTimes(3 * 10**9, 10**9)


def test_v1_usage_percpu_when_usage_all_is_missing(tmp_path: Path) -> None:
    host, reader = setup(tmp_path, "v1")
    host.write("cpuacct", "/a/b", {"cpuacct.usage_percpu": "100 200 0 0"})
    usage = reader.cpu_usage(read_membership(600, host.proc))
    assert usage.total == CpuTimes(300, 0)


def test_v2_cpu_stat_without_usage_is_a_data_error(tmp_path: Path) -> None:
    host, reader = setup(tmp_path, "v2")
    host.write("cpu", "/a/b", {"cpu.stat": "nr_periods 3"})
    with pytest.raises(CgroupDataError):
        reader.cpu_usage(read_membership(600, host.proc))


def test_non_ascii_file_is_a_data_error(tmp_path: Path) -> None:
    host, reader = setup(tmp_path, "v2")
    host.set_memory("/a/b", 100, 0)
    (host.cgroup_dir("memory", "/a/b") / "memory.current").write_bytes(b"\xff\xfe")
    with pytest.raises(CgroupDataError):
        reader.memory(read_membership(600, host.proc))


def test_v2_io_stat(tmp_path: Path) -> None:
    host, reader = setup(tmp_path, "v2")
    host.write(
        "io", "/a/b", {"io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0"}
    )
    record = reader.io(read_membership(600, host.proc))
    counters = record.devices[(8, 0)]
    assert (counters.read_bytes, counters.write_ios) == (4096, 2)


def test_v1_blkio_throttle_files(tmp_path: Path) -> None:
    host, reader = setup(tmp_path, "v1")
    host.write(
        "blkio",
        "/a/b",
        {
            "blkio.throttle.io_serviced_recursive": "8:0 Read 5\n8:0 Write 7\nTotal 12",
            "blkio.throttle.io_service_bytes_recursive": "8:0 Read 512\n8:0 Write 1024\nTotal 1",
        },
    )
    counters = reader.io(read_membership(600, host.proc)).devices[(8, 0)]
    assert (counters.read_ios, counters.write_ios, counters.write_bytes) == (5, 7, 1024)


def test_v2_pressure_copied_and_v1_serves_host(tmp_path: Path) -> None:
    host, reader = setup(tmp_path / "v2", "v2")
    line = (
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0"
    )
    host.write("memory", "/a/b", {"memory.pressure": line})
    assert reader.pressure(read_membership(600, host.proc), "memory") == (line + "\n").encode()
    host1, reader1 = setup(tmp_path / "v1", "v1")
    with pytest.raises(ServeHost):
        reader1.pressure(read_membership(600, host1.proc), "memory")


def test_hybrid_pressure_only_from_the_containers_own_v2_cgroup(tmp_path: Path) -> None:
    """A hybrid host with the cgroupfs driver: containers' v1 cgroups are their own, their
    v2 one the runtime's, shared by all: its pressure is no container's."""
    host, reader = setup(tmp_path, "hybrid")
    line = "some avg10=0.00 avg60=0.00 avg300=0.00 total=1"
    for path in ("/docker/a", "/system.slice/containerd.service"):
        directory = host.cgroup / "unified" / path.strip("/")
        directory.mkdir(parents=True)
        (directory / "memory.pressure").write_text(line + "\n")
        (directory / "cgroup.type").write_text("domain\n")
    v1_lines = "".join(f"{i + 1}:{c}:/docker/a\n" for i, c in enumerate(("memory", "cpu,cpuacct")))
    (host.proc / "600" / "cgroup").write_text(v1_lines + "0::/system.slice/containerd.service\n")
    with pytest.raises(ServeHost):
        reader.pressure(read_membership(600, host.proc), "memory")
    (host.proc / "600" / "cgroup").write_text(v1_lines + "0::/docker/a\n")  # systemd-like
    assert reader.pressure(read_membership(600, host.proc), "memory") == (line + "\n").encode()


@pytest.mark.parametrize("kind", KINDS)
def test_an_optional_file_that_fails_to_read_is_no_answer(tmp_path: Path, kind: str) -> None:
    """memory.stat that exists but fails (EIO, EACCES) is not "absent": all-zero stats
    would show a full container as free. Absent (ENOENT) is still "not provided"."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(600, "/a/b", namespace="ct")
    host.set_memory("/a/b", 64 << 20, 32 << 20)
    layout = discover_layout(host.proc, host.cgroup)

    def failing(path: str) -> bytes:
        if path.endswith("/memory.stat"):
            raise OSError(errno.EIO, "I/O error")
        return Path(path).read_bytes()

    with pytest.raises(CgroupUnavailable, match="EIO"):
        CgroupReader(layout, failing).memory(read_membership(600, host.proc))
    (host.cgroup_dir("memory", "/a/b") / "memory.stat").unlink()
    record = CgroupReader(layout).memory(read_membership(600, host.proc))
    assert record.usage == 32 << 20
