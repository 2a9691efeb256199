"""The pure parsers of cgroup files (procfs_view.parsers) and host /proc files (procfs_view.host).

Every parser either returns what the kernel meant or raises ``CgroupDataError`` (so the
service can fall back to the host file); nothing else may escape, whatever the text.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procfs_view.errors import CgroupDataError
from procfs_view.host import (
    CpuLine,
    HostReader,
    parse_diskstats,
    parse_meminfo,
    parse_start_ticks,
    parse_stat,
    parse_uptime,
)
from procfs_view.parsers import (
    V1_UNLIMITED_THRESHOLD,
    format_cpu_list,
    parse_blkio_recursive,
    parse_cpu_list,
    parse_device,
    parse_flat_keyed,
    parse_int,
    parse_limit,
    parse_nested_keyed,
    parse_usage_all,
    parse_usage_percpu,
)

DATA = Path(__file__).parent.parent / "data"


# -- parse_int / parse_limit ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("0\n", 0), (" 42 ", 42), ("-1", -1)])
def test_parse_int_accepts_decimal_with_whitespace(text: str, value: int) -> None:
    assert parse_int(text, "x") == value


@pytest.mark.parametrize(
    "text",
    ["", "\n", "abc", "1.5", "0x10", "12 34", "max", "1_000", "+5", "\u0661\u0662", "9" * 5000],
)
def test_parse_int_rejects_non_integers_naming_the_file(text: str) -> None:
    with pytest.raises(CgroupDataError, match=r"memory\.current"):
        parse_int(text, "memory.current")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("max\n", None),  # v2 memory.max / memory.swap.max
        ("-1\n", None),  # v1 cpu.cfs_quota_us
        ("9223372036854771712\n", None),  # v1 memory.limit_in_bytes, 4 KiB pages
        ("9223372036854775807\n", None),  # LLONG_MAX
        ("9223372036854710272\n", None),  # unlimited with 64 KiB pages
        ("9223372036854513664\n", None),  # unlimited with 256 KiB pages
        ("9223372036854513663\n", 9223372036854513663),  # below every "unlimited": a limit
        ("536870912\n", 536870912),
        ("0\n", 0),  # a limit of zero is a limit, not "none"
    ],
)
def test_parse_limit(text: str, value: int | None) -> None:
    assert parse_limit(text, "memory.max") == value


@pytest.mark.parametrize("text", ["", "unlimited", "max max", "1G", "MAX"])
def test_parse_limit_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError):
        parse_limit(text, "memory.max")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_limit_only_ever_raises_cgroup_data_error(text: str) -> None:
    try:
        value = parse_limit(text, "memory.max")
    except CgroupDataError:
        return
    assert value is None or 0 <= value < V1_UNLIMITED_THRESHOLD


@settings(max_examples=300, deadline=None)
@given(st.integers())
def test_parse_limit_maps_negative_and_huge_to_none(value: int) -> None:
    parsed = parse_limit(f"{value}\n", "memory.limit_in_bytes")
    if value < 0 or value >= V1_UNLIMITED_THRESHOLD:
        assert parsed is None
    else:
        assert parsed == value


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(min_value=9223372036854771712), st.integers(max_value=-1)))
def test_parse_limit_v1_unlimited_and_negative_are_none(value: int) -> None:
    assert parse_limit(f"{value}\n", "memory.limit_in_bytes") is None


# -- flat keyed (memory.stat, cpu.stat) -----------------------------------------------------


def test_parse_flat_keyed_memory_stat() -> None:
    text = "anon 4096\nfile 8192\nslab_reclaimable 0\nworkingset_refault_anon -3\n"
    assert parse_flat_keyed(text, "memory.stat") == {
        "anon": 4096,
        "file": 8192,
        "slab_reclaimable": 0,
        "workingset_refault_anon": -3,
    }


def test_parse_flat_keyed_skips_lines_of_other_shapes() -> None:
    text = "usage_usec 10\nnr_periods\nthrottled 1 2\nuser_usec seven\nsystem_usec 3\n"
    assert parse_flat_keyed(text, "cpu.stat") == {"usage_usec": 10, "system_usec": 3}


def test_parse_flat_keyed_empty_file_is_empty() -> None:
    assert parse_flat_keyed("", "memory.stat") == {}
    assert parse_flat_keyed("\n\n", "memory.stat") == {}


@pytest.mark.parametrize("text", ["garbage", "a b c\nd\n", "\x00\x01\x02"])
def test_parse_flat_keyed_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError, match=r"memory\.stat"):
        parse_flat_keyed(text, "memory.stat")


# -- devices, io.stat, blkio ----------------------------------------------------------------


def test_parse_device() -> None:
    assert parse_device("259:0", "io.stat") == (259, 0)


@pytest.mark.parametrize("text", ["8", "8:", ":0", "a:b", "8-0", "8:0:1"])
def test_parse_device_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError):
        parse_device(text, "io.stat")


def test_parse_nested_keyed_io_stat() -> None:
    text = (
        "8:0 rbytes=1048576 wbytes=4096 rios=256 wios=1 dbytes=0 dios=0\n"
        "253:1 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0 cost.usage=x junk\n"
    )
    assert parse_nested_keyed(text, "io.stat") == {
        (8, 0): {"rbytes": 1048576, "wbytes": 4096, "rios": 256, "wios": 1, "dbytes": 0, "dios": 0},
        (253, 1): {"rbytes": 0, "wbytes": 512, "rios": 0, "wios": 1, "dbytes": 0, "dios": 0},
    }


def test_parse_nested_keyed_empty() -> None:
    assert parse_nested_keyed("", "io.stat") == {}


def test_parse_nested_keyed_garbage_device() -> None:
    with pytest.raises(CgroupDataError):
        parse_nested_keyed("sda rbytes=1\n", "io.stat")


def test_parse_blkio_recursive() -> None:
    text = (
        "8:0 Read 100\n8:0 Write 20\n8:0 Sync 110\n8:0 Async 10\n8:0 Discard 0\n"
        "8:0 Total 120\n8:16 Read 1\nTotal 121\n"
    )
    assert parse_blkio_recursive(text, "blkio.throttle.io_serviced_recursive") == {
        (8, 0): {"Read": 100, "Write": 20, "Sync": 110, "Async": 10, "Discard": 0, "Total": 120},
        (8, 16): {"Read": 1},
    }


def test_parse_blkio_recursive_only_total() -> None:
    assert parse_blkio_recursive("Total 0\n", "blkio") == {}


@pytest.mark.parametrize("text", ["sda Read 1\n", "8:0 Read many\n"])
def test_parse_blkio_recursive_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError):
        parse_blkio_recursive(text, "blkio")


# -- CPU lists -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0-3\n", (0, 1, 2, 3)),
        ("0-3,8,10-11\n", (0, 1, 2, 3, 8, 10, 11)),
        ("5", (5,)),
        ("\n", ()),  # an empty v2 cpuset.cpus ("inherit")
        ("", ()),
        ("3,1,1-2", (1, 2, 3)),
        (" 0 - 1 ", (0, 1)),
    ],
)
def test_parse_cpu_list(text: str, cpus: tuple[int, ...]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["a", "3-1", "-1", "0-", "1-2-3", "0:3", "0-100000", "0,x"])
def test_parse_cpu_list_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError):
        parse_cpu_list(text, "cpuset.cpus")


@pytest.mark.parametrize(
    ("cpus", "text"),
    [([], ""), ([0], "0"), ([0, 1, 2, 3], "0-3"), ([2, 3, 5], "2-3,5"), ([7, 0, 1, 7], "0-1,7")],
)
def test_format_cpu_list(cpus: list[int], text: str) -> None:
    assert format_cpu_list(cpus) == text


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=4096), max_size=64))
def test_cpu_list_round_trip(cpus: set[int]) -> None:
    text = format_cpu_list(cpus)
    assert parse_cpu_list(text) == tuple(sorted(cpus))
    # The compact form is canonical: formatting the parsed list gives the same text.
    assert format_cpu_list(parse_cpu_list(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-, \n", max_size=30))
def test_parse_cpu_list_only_ever_raises_cgroup_data_error(text: str) -> None:
    try:
        cpus = parse_cpu_list(text)
    except CgroupDataError:
        return
    assert list(cpus) == sorted(set(cpus))
    assert all(cpu >= 0 for cpu in cpus)


# -- cpuacct ---------------------------------------------------------------------------------


def test_parse_usage_all() -> None:
    text = "cpu user system\n0 1000000000 500\n1 0 0\n2 7 8\n"
    assert parse_usage_all(text, "cpuacct.usage_all") == {
        0: (1000000000, 500),
        1: (0, 0),
        2: (7, 8),
    }


@pytest.mark.parametrize(
    "text", ["", "\n0 1 2\n", "0 1 2\n", "cpu user system\n0 1\n", "cpu user system\nx 1 2\n"]
)
def test_parse_usage_all_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError):
        parse_usage_all(text, "cpuacct.usage_all")


def test_parse_usage_percpu() -> None:
    assert parse_usage_percpu("10 0 30 \n", "cpuacct.usage_percpu") == {0: 10, 1: 0, 2: 30}
    with pytest.raises(CgroupDataError):
        parse_usage_percpu("10 x\n", "cpuacct.usage_percpu")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_cgroup_parsers_never_raise_anything_else(text: str) -> None:
    for parser in (
        parse_flat_keyed,
        parse_nested_keyed,
        parse_blkio_recursive,
        parse_usage_all,
        parse_usage_percpu,
        parse_cpu_list,
    ):
        with contextlib.suppress(CgroupDataError):
            parser(text, "file")


# -- host /proc/meminfo ----------------------------------------------------------------------


def test_parse_meminfo_sample() -> None:
    info = parse_meminfo((DATA / "meminfo.x86_64").read_text())
    assert info.entries[0].key == "MemTotal"
    assert info.kb("MemTotal") == 24684096
    assert info.kb("SwapTotal") == 8388604
    assert info.kb("Active(anon)") == 1512
    assert info.kb("NoSuchLine", default=-7) == -7
    units = {entry.key: entry.unit for entry in info.entries}
    assert units["MemTotal"] == "kB"
    assert units["HugePages_Total"] == ""  # a page count: no unit
    assert units["Hugepagesize"] == "kB"


def test_parse_meminfo_without_space_after_colon_and_without_unit() -> None:
    text = "MemTotal:16384 kB\nMemFree:    1024 kB\nHugePages_Total:       0\nNoValue:\n"
    info = parse_meminfo(text)
    assert [(e.key, e.value, e.unit) for e in info.entries] == [
        ("MemTotal", 16384, "kB"),
        ("MemFree", 1024, "kB"),
        ("HugePages_Total", 0, ""),
    ]


def test_parse_meminfo_skips_lines_without_colon_or_number() -> None:
    info = parse_meminfo("garbage line\nMemTotal: 8 kB\nFoo: bar kB\n")
    assert [e.key for e in info.entries] == ["MemTotal"]


@pytest.mark.parametrize("text", ["", "MemFree: 1 kB\n", "MemTotal: lots\n", "\x00" * 10])
def test_parse_meminfo_without_memtotal(text: str) -> None:
    with pytest.raises(CgroupDataError, match="MemTotal"):
        parse_meminfo(text)


# -- host /proc/stat -------------------------------------------------------------------------


def test_parse_stat_sample() -> None:
    stat = parse_stat((DATA / "stat.x86_64").read_text())
    assert stat.total.name == "cpu"
    assert stat.total.ticks == (40000, 100, 12000, 400000, 2000, 0, 500, 300, 0, 0)
    assert [line.number for line in stat.per_cpu] == [0, 1, 2, 3]
    assert stat.cpu(2) is not None
    assert stat.cpu(2).ticks[3] == 100000  # type: ignore[union-attr]
    assert stat.cpu(9) is None
    assert stat.total.number is None
    assert stat.other_lines[0].startswith("intr ")
    assert "btime 1795316148" in stat.other_lines


def test_host_stat_finds_each_cpu_by_number() -> None:
    """Lookups by CPU number (the stat view makes one per visible CPU), with a gap in the
    numbering as after a hot-unplug."""
    host = parse_stat("cpu  9 0 9 9\ncpu0 1 0 1 1\ncpu2 3 0 3 3\nctxt 5\n")
    assert host.cpu(0) == CpuLine("cpu0", (1, 0, 1, 1))
    assert host.cpu(2) == CpuLine("cpu2", (3, 0, 3, 3))
    assert host.cpu(1) is None


def test_parse_stat_converts_a_cpu_line_when_it_is_looked_up() -> None:
    host = parse_stat("cpu  9 0 9 9\ncpu0 1 0 1 1\ncpu1 1 x 1 1\ncpu2 1 1\nctxt 5\n")
    assert host.cpu_count == 3
    assert host.cpu_numbers == (0, 1, 2)
    assert host.cpu(0) == CpuLine("cpu0", (1, 0, 1, 1))
    with pytest.raises(CgroupDataError, match="bad cpu line"):
        host.cpu(1)
    with pytest.raises(CgroupDataError, match="too few fields"):
        host.cpu(2)
    with pytest.raises(CgroupDataError):
        host.per_cpu  # noqa: B018


def test_parse_stat_old_kernel_with_four_fields() -> None:
    stat = parse_stat("cpu  1 2 3 4\ncpu0 1 2 3 4\nctxt 5\n")
    assert stat.total.ticks == (1, 2, 3, 4)
    assert stat.per_cpu[0].ticks == (1, 2, 3, 4)
    assert stat.other_lines == ("ctxt 5",)


def test_parse_stat_future_kernel_with_more_fields() -> None:
    stat = parse_stat("cpu  1 2 3 4 5 6 7 8 9 10 11 12\ncpu3 1 2 3 4 5 6 7 8 9 10 11 12\n")
    assert len(stat.total.ticks) == 12
    assert stat.per_cpu[0].number == 3


@pytest.mark.parametrize(
    "text",
    [
        "",
        "intr 1\n",  # no aggregate line
        "cpu  1 2 3\n",  # too few fields
        "cpu  1 2 3 x\n",
        "cpuX 1 2 3 4\ncpu  1 2 3 4\n",
        "cpu0 1 2 3 4\n",  # per-CPU lines but no aggregate
        "cpu  1 2 3 4\ncpu\u00b2 1 2 3 4\n",  # a digit int() does not take
    ],
)
def test_parse_stat_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError):
        parse_stat(text)


# -- host /proc/diskstats --------------------------------------------------------------------


def _disk_line(fields: int) -> str:
    return " 254       0 vda " + " ".join(str(n) for n in range(1, fields - 2)) + "\n"


@pytest.mark.parametrize("fields", [14, 18, 20])
def test_parse_diskstats_field_counts(fields: int) -> None:
    (disk,) = parse_diskstats(_disk_line(fields))
    assert (disk.major, disk.minor, disk.name) == (254, 0, "vda")
    assert len(disk.counters) == fields - 3
    assert disk.counters[0] == 1


def test_parse_diskstats_sample() -> None:
    disks = parse_diskstats((DATA / "diskstats.x86_64").read_text())
    names = [disk.name for disk in disks]
    assert "vda" in names
    assert all(len(disk.counters) == 17 for disk in disks)
    vda = disks[names.index("vda")]
    assert vda.counters[:3] == (57985, 8335, 2983146)


def test_parse_diskstats_skips_short_lines() -> None:
    # Partitions on 2.6.25-era kernels had 7 fields; nothing current prints them.
    assert parse_diskstats("   8    1 sda1 1 2 3 4\n") == ()


def test_parse_diskstats_garbage() -> None:
    with pytest.raises(CgroupDataError):
        parse_diskstats("x y vda " + " ".join(["0"] * 11) + "\n")


# -- /proc/uptime and /proc/<pid>/stat -------------------------------------------------------


def test_parse_uptime() -> None:
    assert parse_uptime("1000.00 3500.25\n") == (1000.0, 3500.25)


@pytest.mark.parametrize("text", ["", "1000.00\n", "a b\n"])
def test_parse_uptime_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError):
        parse_uptime(text)


def _pid_stat(comm: str, start_ticks: int) -> str:
    fields = ["S", *["0"] * 18, str(start_ticks), *["0"] * 30]
    return f"4242 ({comm}) {' '.join(fields)}\n"


@pytest.mark.parametrize("comm", ["bash", "tmux: server", "a) b (c", ") 1 2 3 4", "x)"])
def test_parse_start_ticks_with_odd_command_names(comm: str) -> None:
    assert parse_start_ticks(_pid_stat(comm, 123456)) == 123456


@pytest.mark.parametrize(
    "text", ["", "4242 (bash) S 1 2 3\n", "4242 bash S " + " ".join(["0"] * 30) + "\n"]
)
def test_parse_start_ticks_garbage(text: str) -> None:
    with pytest.raises(CgroupDataError):
        parse_start_ticks(text)


def test_parse_start_ticks_non_numeric_starttime() -> None:
    text = _pid_stat("x", 7).replace(" 7 ", " seven ")
    with pytest.raises(CgroupDataError, match="seven"):
        parse_start_ticks(text)


# -- HostReader ------------------------------------------------------------------------------


def test_host_reader_online_falls_back_to_stat(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "stat").write_text("cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu2 1 2 3 4\n")
    reader = HostReader(proc, tmp_path / "sys")
    assert reader.online_cpus() == (0, 2)
    online = tmp_path / "sys/devices/system/cpu/online"
    online.parent.mkdir(parents=True)
    online.write_text("0-5\n")
    assert reader.online_cpus() == (0, 1, 2, 3, 4, 5)
