"""Which CPUs a container sees: visible_cpus, /proc/cpuinfo and /sys/devices/system/cpu/online.

What users check: ``nproc``/``getconf _NPROCESSORS_ONLN`` (the online file),
``grep -c ^processor /proc/cpuinfo``, and ``lscpu``'s processor numbering.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from procfs_view.cgroup.records import CpuQuota
from procfs_view.options import ViewOptions
from procfs_view.parsers import parse_cpu_list
from procfs_view.views import cpu_online, cpuinfo
from procfs_view.views.cpus import VisibleCpus, visible_cpus
from tests.fixtures import FixtureHost

DATA = Path(__file__).parent.parent / "data"
ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
KINDS = ("v1", "v2", "hybrid")
CT = 4242


def host_cpuinfo(arch: str) -> str:
    return (DATA / f"cpuinfo.{arch}").read_text()


def processor_numbers(text: str) -> list[int]:
    """What ``grep ^processor`` + the number shows, for x86/arm/ppc (``processor : N``) and
    s390x (``cpu number : N`` blocks)."""
    return [
        int(match.group(2))
        for match in re.finditer(r"^(processor|cpu number)\s*:\s*(\d+)\s*$", text, re.MULTILINE)
    ]


# -- visible_cpus ----------------------------------------------------------------------------


def test_visible_cpus_is_the_cpuset_without_cpu_view() -> None:
    cpus = visible_cpus((2, 3, 5), range(8), CpuQuota(0.5), cpu_view=False)
    assert cpus.physical == (2, 3, 5)
    assert not cpus.renumbered
    assert cpus.count == 3
    assert [cpus.shown_number(i) for i in range(cpus.count)] == [2, 3, 5]


def test_visible_cpus_drops_offline_cpus() -> None:
    assert visible_cpus((1, 2, 6, 7), (0, 1, 2, 3), CpuQuota(None), False).physical == (1, 2)


@pytest.mark.parametrize("cpuset", [None, (), (8, 9)])
def test_visible_cpus_empty_cpuset_shows_host_online(cpuset: tuple[int, ...] | None) -> None:
    """No cpuset controller, an empty cpuset, or one with only offline CPUs: never zero CPUs."""
    assert visible_cpus(cpuset, (0, 1, 2, 3), CpuQuota(None), False).physical == (0, 1, 2, 3)


def test_visible_cpus_without_any_information_shows_one_cpu() -> None:
    assert visible_cpus(None, (), CpuQuota(None), True).count == 1


def test_visible_cpus_unknown_online_keeps_the_cpuset() -> None:
    assert visible_cpus((4, 5), (), CpuQuota(None), False).physical == (4, 5)


@pytest.mark.parametrize(
    ("cpuset", "quota", "count"),
    [
        ((0, 1, 2, 3), 1.5, 2),  # ceil(1.5)
        ((0, 1, 2, 3), 2.0, 2),
        ((0, 1, 2, 3), 2.01, 3),
        ((0, 1, 2, 3), 0.5, 1),
        ((0, 1, 2, 3), 0.001, 1),  # minimum 1
        ((1, 2), 8.0, 2),  # capped by the cpuset size
        ((1, 2), None, 2),  # no quota: the cpuset size
        ((0, 1, 2, 3), 0.0, 4),  # a zero quota is not a limit we can express
    ],
)
def test_visible_cpus_cpu_view_count(
    cpuset: tuple[int, ...], quota: float | None, count: int
) -> None:
    cpus = visible_cpus(cpuset, range(4), CpuQuota(quota), cpu_view=True)
    assert cpus.count == count
    assert cpus.renumbered
    assert cpus.physical == cpuset[:count]
    assert [cpus.shown_number(i) for i in range(count)] == list(range(count))


@pytest.mark.parametrize("quota", [float("inf"), float("nan")])
def test_visible_cpus_non_finite_quota_is_no_limit(quota: float) -> None:
    assert visible_cpus((0, 1), range(4), CpuQuota(quota), cpu_view=True).count == 2


# -- cpu_online ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("physical", "renumbered", "expected"),
    [
        ((2, 3, 5), False, "2-3,5\n"),
        ((2, 3, 5), True, "0-2\n"),
        ((0,), False, "0\n"),
        ((7,), True, "0\n"),
        ((0, 1, 2, 3), False, "0-3\n"),
    ],
)
def test_cpu_online(physical: tuple[int, ...], renumbered: bool, expected: str) -> None:
    assert cpu_online.render(VisibleCpus(physical, renumbered)) == expected.encode()


# -- cpuinfo ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("renumbered", [False, True])
def test_cpuinfo_keeps_visible_cpus_renumbered(arch: str, renumbered: bool) -> None:
    host = host_cpuinfo(arch)
    text = cpuinfo.render(host, VisibleCpus((1, 3), renumbered)).decode()
    assert processor_numbers(text) == [0, 1]


@pytest.mark.parametrize("arch", ARCHES)
def test_cpuinfo_renders_of_one_host_file_are_independent(arch: str) -> None:
    """The host file's blocks are split once and shared by every render: one container's
    CPUs must not change what the next one is shown."""
    host = host_cpuinfo(arch)
    first = cpuinfo.render(host, VisibleCpus((1, 3), False))
    assert processor_numbers(cpuinfo.render(host, VisibleCpus((2,), True)).decode()) == [0]
    assert cpuinfo.render(host, VisibleCpus((0, 1, 2, 3), False)).decode() == host
    assert cpuinfo.render(host, VisibleCpus((1, 3), False)) == first


@pytest.mark.parametrize("arch", ARCHES)
def test_cpuinfo_all_cpus_is_the_host_file(arch: str) -> None:
    host = host_cpuinfo(arch)
    assert cpuinfo.render(host, VisibleCpus((0, 1, 2, 3), False)).decode() == host


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_cpuinfo_processor_count_is_exactly_n(arch: str, count: int) -> None:
    cpus = visible_cpus(range(4), range(4), CpuQuota(count - 0.5), cpu_view=True)
    text = cpuinfo.render(host_cpuinfo(arch), cpus).decode()
    assert processor_numbers(text) == list(range(count))


def test_cpuinfo_x86_keeps_each_block_whole() -> None:
    host = host_cpuinfo("x86_64")
    text = cpuinfo.render(host, VisibleCpus((2,), False)).decode()
    host_blocks = host.strip("\n").split("\n\n")
    (block,) = text.strip("\n").split("\n\n")
    assert block == host_blocks[2].replace("processor\t: 2", "processor\t: 0")
    # Per-socket lines stay the host's values (as in LXCFS).
    assert "siblings\t: 2" in block
    assert "apicid\t\t: " in block


def test_cpuinfo_ppc64le_keeps_the_trailing_machine_block() -> None:
    text = cpuinfo.render(host_cpuinfo("ppc64le"), VisibleCpus((3,), True)).decode()
    assert processor_numbers(text) == [0]
    blocks = text.strip("\n").split("\n\n")
    assert len(blocks) == 2
    assert blocks[1].startswith("timebase\t: 512000000")
    assert "machine\t\t: CHRP IBM,9009-22A" in blocks[1]
    assert text.endswith("MMU\t\t: Radix\n")  # the host file's ending, not an extra blank


def test_cpuinfo_s390x_rewrites_header_and_filters_cpu_number_blocks() -> None:
    text = cpuinfo.render(host_cpuinfo("s390x"), VisibleCpus((1, 3), True)).decode()
    header = text.split("\n\n")[0].splitlines()
    assert "# processors    : 2" in header
    assert [line for line in header if line.startswith("processor ")] == [
        "processor 0: version = FF,  identification = 0133E8,  machine = 2964",
        "processor 1: version = FF,  identification = 0133E8,  machine = 2964",
    ]
    assert header[0] == "vendor_id       : IBM/S390"
    assert "bogomips per cpu: 3241.00" in header
    assert re.findall(r"^cpu number\s*: (\d+)$", text, re.MULTILINE) == ["0", "1"]
    assert text.count("cpu MHz dynamic") == 2


def test_cpuinfo_s390x_header_processor_lines_renumber_identity() -> None:
    host = (
        "vendor_id       : IBM/S390\n# processors    : 3\n"
        "processor 0: version = 00,  identification = 000A,  machine = 3906\n"
        "processor 1: version = 00,  identification = 000B,  machine = 3906\n"
        "processor 2: version = 00,  identification = 000C,  machine = 3906\n"
    )
    text = cpuinfo.render(host, VisibleCpus((2,), False)).decode()
    assert text.splitlines() == [
        "vendor_id       : IBM/S390",
        "# processors    : 1",
        "processor 0: version = 00,  identification = 000C,  machine = 3906",
    ]


def test_cpuinfo_aarch64_keeps_a_leading_summary_block() -> None:
    """Kernels before 4.x printed a ``Processor : AArch64 ...`` block before the CPUs."""
    host = (
        "Processor\t: AArch64 Processor rev 4 (aarch64)\n\n"
        "processor\t: 0\nBogoMIPS\t: 38.40\n\n"
        "processor\t: 1\nBogoMIPS\t: 38.40\n\n"
        "Hardware\t: Qualcomm\n"
    )
    text = cpuinfo.render(host, VisibleCpus((1,), True)).decode()
    assert text.startswith("Processor\t: AArch64 Processor rev 4 (aarch64)\n\n")
    assert processor_numbers(text) == [0]
    assert "Hardware\t: Qualcomm" in text


def test_cpuinfo_missing_cpu_blocks_are_not_invented() -> None:
    text = cpuinfo.render(host_cpuinfo("x86_64"), VisibleCpus((9,), False)).decode()
    assert processor_numbers(text) == []


# -- through the service, on fixture hosts ---------------------------------------------------


def online(host: FixtureHost, cpu_view: bool, pid: int = CT) -> str:
    service = host.service(ViewOptions(cpu_view=cpu_view))
    return service.render("sys/devices/system/cpu/online", pid).decode()


def cpuinfo_processors(host: FixtureHost, cpu_view: bool, pid: int = CT) -> list[int]:
    service = host.service(ViewOptions(cpu_view=cpu_view))
    return processor_numbers(service.render("proc/cpuinfo", pid).decode())


@pytest.mark.parametrize("kind", KINDS)
def test_service_cpuset_and_quota_of_one_and_a_half(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    host.add_process(CT, "/ct", namespace="ct")
    host.set_cpu("/ct", cpus="1-2", quota=(150000, 100000))
    assert online(host, cpu_view=True) == "0-1\n"
    assert cpuinfo_processors(host, cpu_view=True) == [0, 1]
    # Without the CPU view: the raw cpuset, and cpuinfo shows those two CPUs renumbered.
    assert online(host, cpu_view=False) == "1-2\n"
    assert cpuinfo_processors(host, cpu_view=False) == [0, 1]


@pytest.mark.parametrize("kind", KINDS)
def test_service_half_a_cpu_is_one_cpu(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    host.add_process(CT, "/ct", namespace="ct")
    host.set_cpu("/ct", cpus="0-3", quota=(50000, 100000))
    assert online(host, cpu_view=True) == "0\n"
    assert len(parse_cpu_list(online(host, cpu_view=True))) == 1  # what nproc prints
    assert cpuinfo_processors(host, cpu_view=True) == [0]
    assert online(host, cpu_view=False) == "0-3\n"


@pytest.mark.parametrize("kind", KINDS)
def test_service_parent_quota_wins(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    host.add_process(CT, "/pod/ct", namespace="ct")
    host.set_cpu("/pod", quota=(100000, 100000))
    host.set_cpu("/pod/ct", cpus="0-3", quota=(300000, 100000))
    assert online(host, cpu_view=True) == "0\n"
    assert cpuinfo_processors(host, cpu_view=True) == [0]


@pytest.mark.parametrize("kind", KINDS)
def test_service_child_quota_tighter_than_parent(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    host.add_process(CT, "/pod/ct", namespace="ct")
    host.set_cpu("/pod", quota=(400000, 100000))
    host.set_cpu("/pod/ct", cpus="0-3", quota=(200000, 100000))
    assert online(host, cpu_view=True) == "0-1\n"


@pytest.mark.parametrize("kind", KINDS)
def test_service_no_quota_shows_the_cpuset(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    host.add_process(CT, "/ct", namespace="ct")
    host.set_cpu("/ct", cpus="0,2-3")
    assert online(host, cpu_view=True) == "0-2\n"
    assert online(host, cpu_view=False) == "0,2-3\n"
    assert cpuinfo_processors(host, cpu_view=False) == [0, 1, 2]


@pytest.mark.parametrize("kind", KINDS)
def test_service_inherited_cpuset(tmp_path: Path, kind: str) -> None:
    """An empty cpuset.cpus (v2 default) inherits the nearest ancestor's list."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(CT, "/pod/ct", namespace="ct")
    host.set_cpu("/pod", cpus="2-3")
    host.write("cpuset", "/pod/ct", {"cpuset.cpus": ""})
    assert online(host, cpu_view=False) == "2-3\n"


@pytest.mark.parametrize("kind", KINDS)
def test_service_counts_the_granted_cpus_not_the_requested(tmp_path: Path, kind: str) -> None:
    """A container asking for 0-3 in a slice limited to 1-2 runs on 1-2: that is what
    nproc and getconf must count (LXCFS shows the request)."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(CT, "/slice/ct", namespace="ct")
    host.set_cpu("/slice", cpus="1-2")
    effective = "cpuset.cpus.effective" if kind == "v2" else "cpuset.effective_cpus"
    host.write("cpuset", "/slice/ct", {"cpuset.cpus": "0-3", effective: "1-2"})
    assert online(host, cpu_view=False) == "1-2\n"
    assert cpuinfo_processors(host, cpu_view=False) == [0, 1]


@pytest.mark.parametrize("kind", KINDS)
def test_service_host_online_limits_the_cpuset(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind, online="0-1")
    host.add_process(CT, "/ct", namespace="ct")
    host.set_cpu("/ct", cpus="1-3")
    assert online(host, cpu_view=False) == "1\n"


@pytest.mark.parametrize("arch", ARCHES)
def test_service_cpuinfo_per_architecture(tmp_path: Path, arch: str) -> None:
    host = FixtureHost(tmp_path, "v2", cpuinfo=f"cpuinfo.{arch}")
    host.add_process(CT, "/ct", namespace="ct")
    host.set_cpu("/ct", cpus="0-3", quota=(250000, 100000))
    assert cpuinfo_processors(host, cpu_view=True) == [0, 1, 2]


@pytest.mark.parametrize("kind", KINDS)
def test_service_root_cgroup_caller_sees_all_cpus(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    assert online(host, cpu_view=False, pid=1) == "0-3\n"
    assert cpuinfo_processors(host, cpu_view=False, pid=1) == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", KINDS)
def test_service_answer_falls_back_to_host_for_garbage_cpuset(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    host.add_process(CT, "/ct", namespace="ct")
    host.set_cpu("/ct", cpus="lots")
    service = host.service(ViewOptions(cpu_view=True))
    assert service.answer("sys/devices/system/cpu/online", CT) == b"0-3\n"
