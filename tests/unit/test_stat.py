"""/proc/stat for a container, virtualized on v1 *and* v2 (LXCFS serves host data on v2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procfs_view.cgroup.records import CpuQuota
from procfs_view.errors import CgroupDataError
from procfs_view.host import CpuLine, HostStat
from procfs_view.options import ViewOptions
from procfs_view.views.cpus import visible_cpus
from procfs_view.views.stat import host_cpu_lines, restricted
from tests.fixtures import FixtureHost

KINDS = ["v1", "v2", "hybrid"]
SECOND = 10**9


def cpu_lines(content: bytes) -> dict[str, list[int]]:
    lines = {}
    for line in content.decode().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu"):
            lines[name] = [int(value) for value in fields]
    return lines


def container(tmp_path: Path, kind: str, cpus: str = "1-2") -> FixtureHost:
    host = FixtureHost(tmp_path, kind)
    host.add_process(900, "/ct", namespace="ct", nspid=(900, 1))
    host.set_cpu("/ct", cpus, None, {1: (6 * SECOND, 2 * SECOND), 2: (2 * SECOND, 0)})
    return host


@pytest.mark.parametrize("kind", KINDS)
def test_cgroup_cpu_time_in_user_hz(tmp_path: Path, kind: str) -> None:
    lines = cpu_lines(container(tmp_path, kind).service().render("proc/stat", 900))
    assert set(lines) == {"cpu", "cpu1", "cpu2"}
    user, system = lines["cpu"][0], lines["cpu"][2]
    assert (user, system) == (800, 200)  # 8 s user, 2 s system at USER_HZ=100
    if kind != "v2":  # v1 knows per-CPU usage
        assert (lines["cpu1"][0], lines["cpu1"][2]) == (600, 200)
        assert (lines["cpu2"][0], lines["cpu2"][2]) == (200, 0)
    else:  # v2 only totals: spread evenly
        assert (lines["cpu1"][0], lines["cpu1"][2]) == (400, 100)


@pytest.mark.parametrize("kind", KINDS)
def test_each_line_adds_up_to_host_elapsed_time(tmp_path: Path, kind: str) -> None:
    """top computes busy% as busy delta / total delta; total per CPU must be the host's."""
    host = container(tmp_path, kind)
    host_cpu1 = cpu_lines((host.proc / "stat").read_bytes())["cpu1"]
    lines = cpu_lines(host.service().render("proc/stat", 900))
    assert sum(lines["cpu1"][:8]) == sum(host_cpu1[:8])
    assert lines["cpu"] == [a + b for a, b in zip(lines["cpu1"], lines["cpu2"], strict=True)]


@pytest.mark.parametrize("kind", KINDS)
def test_cpu_view_renumbers_and_folds(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind, cpus="0-3")
    host.set_cpu("/ct", "0-3", (150000, 100000), {1: (6 * SECOND, 2 * SECOND), 3: (2 * SECOND, 0)})
    lines = cpu_lines(host.service(ViewOptions(cpu_view=True)).render("proc/stat", 900))
    assert set(lines) == {"cpu", "cpu0", "cpu1"}
    assert (lines["cpu"][0], lines["cpu"][2]) == (800, 200)


@pytest.mark.parametrize("kind", KINDS)
def test_counters_grow_with_usage(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    before = cpu_lines(host.service().render("proc/stat", 900))
    host.set_cpu("/ct", "1-2", None, {1: (7 * SECOND, 2 * SECOND), 2: (3 * SECOND, SECOND)})
    stat = (host.proc / "stat").read_text().replace("cpu1 10000 ", "cpu1 10300 ")
    (host.proc / "stat").write_text(stat.replace("cpu2 10000 ", "cpu2 10300 "))
    after = cpu_lines(host.service().render("proc/stat", 900))
    for name in before:
        assert all(a >= b for a, b in zip(after[name], before[name], strict=True)), name


@pytest.mark.parametrize("kind", KINDS)
def test_other_lines_are_the_hosts(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    rendered = host.service().render("proc/stat", 900).decode().splitlines()
    host_lines = (host.proc / "stat").read_text().splitlines()
    assert [x for x in rendered if not x.startswith("cpu")] == [
        x for x in host_lines if not x.startswith("cpu")
    ]
    assert rendered[0].startswith("cpu  ")


def test_root_cgroup_gets_the_host_file(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v1")
    host.add_process(901, "/")
    service = host.service()
    assert service.answer("proc/stat", 901) == (host.proc / "stat").read_bytes()


@pytest.mark.parametrize("cpu_view", [False, True])
def test_root_cpuacct_cgroup_in_a_cpuset_sees_only_its_cpus_host_lines(
    tmp_path: Path, cpu_view: bool
) -> None:
    """v1: a process left in the root cpuacct cgroup but pinned into a cpuset (as the
    review's ``runF.sh``). It was served the whole host file, cpu0 to cpu3, while nproc
    (cpu/online) said 1; LXCFS shows only the cpuset's CPU."""
    host = FixtureHost(tmp_path, "v1")
    host.add_process(902, "/", namespace="pinned", nspid=(902, 1))
    cgroup_file = host.proc / "902" / "cgroup"
    cgroup_file.write_text(cgroup_file.read_text().replace(":cpuset:/", ":cpuset:/pinned"))
    host.write("cpuset", "/pinned", {"cpuset.cpus": "2"})
    (host.proc / "stat").write_text(
        (host.proc / "stat").read_text().replace("cpu2 10000 25 3000", "cpu2 20000 25 4000")
    )
    service = host.service(ViewOptions(cpu_view=cpu_view))
    host_cpu2 = cpu_lines((host.proc / "stat").read_bytes())["cpu2"]
    lines = cpu_lines(service.render("proc/stat", 902))
    shown = "cpu0" if cpu_view else "cpu2"
    assert lines == {"cpu": host_cpu2, shown: host_cpu2}
    assert service.render("sys/devices/system/cpu/online", 902) == (b"0\n" if cpu_view else b"2\n")


def test_root_cpuacct_cgroup_on_every_cpu_gets_the_host_file(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v1")
    host.add_process(902, "/", namespace="ct", nspid=(902, 1))
    for options in (ViewOptions(), ViewOptions(cpu_view=True)):
        service = host.service(options)
        assert service.answer("proc/stat", 902) == (host.proc / "stat").read_bytes()


@given(
    host_cpus=st.sets(st.integers(0, 7), min_size=1),
    cpuset=st.sets(st.integers(0, 7), min_size=1),
    quota=st.one_of(st.none(), st.floats(0.1, 8.0)),
    cpu_view=st.booleans(),
)
def test_host_lines_of_the_visible_cpus_add_up(
    host_cpus: set[int], cpuset: set[int], quota: float | None, cpu_view: bool
) -> None:
    """The lines shown to a root-cpuacct caller: one per visible CPU (named as cpuinfo
    and cpu/online number it), its host line unchanged, and the aggregate their sum;
    when it is shown every host CPU, the host file itself is served."""
    numbers = sorted(host_cpus)
    per_cpu = tuple(CpuLine(f"cpu{n}", (n, 1, 10 * n, 100 + n, 0, 0, 0, 0)) for n in numbers)
    host = HostStat(CpuLine("cpu", (0,) * 8), per_cpu, ())
    cpus = visible_cpus(tuple(sorted(cpuset)), tuple(numbers), CpuQuota(quota), cpu_view)
    if not restricted(host, cpus):  # every host CPU, however numbered: the host file
        assert cpus.physical == tuple(numbers)
        return
    lines = host_cpu_lines(host, cpus)
    assert [line.name for line in lines[1:]] == [
        f"cpu{cpus.shown_number(i)}" for i in range(cpus.count)
    ]
    assert [line.ticks for line in lines[1:]] == [host.cpu(n).ticks for n in cpus.physical]
    assert lines[0].ticks == tuple(map(sum, zip(*(line.ticks for line in lines[1:]), strict=True)))


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_visible_cpus_host_lines_matter(tmp_path: Path, kind: str) -> None:
    """The host's per-CPU lines are converted only for the CPUs a container sees (on a
    256-CPU host that was most of a read's cost for a 4-CPU container): garbage in another
    CPU's line leaves the view alone, garbage in a visible CPU's line serves the host file."""
    host = container(tmp_path, kind)  # sees CPUs 1-2
    pristine = (host.proc / "stat").read_text()
    (host.proc / "stat").write_text(pristine.replace("cpu3 10000 25", "cpu3 10000 x"))
    assert set(cpu_lines(host.service().render("proc/stat", 900))) == {"cpu", "cpu1", "cpu2"}
    (host.proc / "stat").write_text(pristine.replace("cpu2 10000 25", "cpu2 10000 x"))
    service = host.service()
    with pytest.raises(CgroupDataError, match="cpu2"):
        service.render("proc/stat", 900)
    assert service.answer("proc/stat", 900) == (host.proc / "stat").read_bytes()


def test_a_host_caller_with_the_cpu_view_and_an_offline_cpu_gets_the_host_file() -> None:
    """CPU 1 offline: the CPU view numbers 0, 2, 3 as 0-2, but a caller shown every host
    CPU is the host and reads the host's file (the renumbered lines dropped the offline
    CPU's counters from the aggregate)."""
    online = (0, 2, 3)
    per_cpu = tuple(CpuLine(f"cpu{n}", (10, 0, 10, 100, 0, 0, 0, 0)) for n in online)
    host = HostStat(CpuLine("cpu", (40, 0, 40, 400, 0, 0, 0, 0)), per_cpu, ())
    cpus = visible_cpus(online, online, CpuQuota(None), cpu_view=True)
    assert not restricted(host, cpus)
