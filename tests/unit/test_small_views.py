"""uptime, loadavg, swaps, diskstats and pressure: the pure views and the same through the
service on fixture hosts (v1, v2, hybrid)."""

from __future__ import annotations

import re
from dataclasses import astuple
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procfs_view.cgroup import reader as reader_module
from procfs_view.cgroup.records import IoCounters, IoRecord
from procfs_view.host import DiskLine, parse_diskstats
from procfs_view.options import ViewOptions
from procfs_view.service import ViewService
from procfs_view.views import diskstats, loadavg, pressure, swaps, uptime
from procfs_view.views.loadavg import LoadSample
from tests.fixtures import FixtureHost

KINDS = ("v1", "v2", "hybrid")
CT = 4242
UPTIME_FORMAT = re.compile(r"^\d+\.\d\d \d+\.\d\d\n$")
GIB = 1 << 30
MIB = 1 << 20


def container(host: FixtureHost, cgroup: str = "/ct", start_ticks: int = 5000) -> None:
    """Process CT is the init (innermost pid 1) of its own pid namespace, in ``cgroup``."""
    host.add_process(CT, cgroup, namespace="ct", nspid=(CT, 1), start_ticks=start_ticks)


# -- uptime ----------------------------------------------------------------------------------


def test_uptime_compute() -> None:
    assert uptime.compute(1000.0, 50.0, 100.0) == (950.0, 850.0)


def test_uptime_of_a_fresh_container() -> None:
    assert uptime.render(1000.0, 999.5, 0.1) == b"0.50 0.40\n"


def test_uptime_idle_never_negative() -> None:
    """A container busy on 8 CPUs it is not shown uses more CPU seconds than it has."""
    assert uptime.compute(1000.0, 990.0, 80.0) == (10.0, 0.0)
    assert uptime.render(1000.0, 990.0, 80.0) == b"10.00 0.00\n"


def test_uptime_idle_is_summed_over_the_containers_cpus() -> None:
    """As the kernel's: a 2-CPU container up 100 s that used 150 CPU seconds was idle 50,
    and keeps its idle while it keeps both CPUs busy (one CPU's worth showed 0, falling)."""
    assert uptime.render(1100.0, 1000.0, 150.0, cpus=2) == b"100.00 50.00\n"
    assert uptime.compute(1101.0, 1000.0, 152.0, cpus=2) == (101.0, 50.0)


def test_uptime_never_negative_when_init_started_after_the_reading() -> None:
    assert uptime.compute(100.0, 100.5, -3.0) == (0.0, 0.0)


def test_uptime_format() -> None:
    text = uptime.render(123456.789, 0.0, 1.0).decode()
    assert UPTIME_FORMAT.match(text)
    assert text == "123456.79 123455.79\n"


@pytest.mark.parametrize("kind", KINDS)
def test_service_uptime_of_a_fresh_container(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)  # host uptime 1000.00 s
    container(host, start_ticks=99_800)  # started 998 s after boot (USER_HZ 100)
    host.set_cpu("/ct", per_cpu_ns={0: (500_000_000, 0), 1: (0, 250_000_000)})
    text = host.service().render("proc/uptime", CT).decode()
    assert UPTIME_FORMAT.match(text)
    up, idle = (float(field) for field in text.split())
    assert up == pytest.approx(2.0)
    assert idle == pytest.approx(7.25)  # 2 s up on the 4 CPUs it sees, 0.75 s of CPU


@pytest.mark.parametrize("kind", KINDS)
def test_service_uptime_idle_of_a_busy_container(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host, start_ticks=99_000)  # up 10 s
    ns = 10 * 1_000_000_000
    host.set_cpu("/ct", per_cpu_ns={cpu: (ns, 0) for cpu in range(4)})  # 40 CPU-seconds
    assert host.service().render("proc/uptime", CT) == b"10.00 0.00\n"


def test_service_uptime_host_caller_gets_host_file(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")
    host.add_process(77, "/ct")  # a process of the host's pid namespace
    assert host.service().answer("proc/uptime", 77) == b"1000.00 3500.00\n"


# -- loadavg ---------------------------------------------------------------------------------


def test_loadavg_render_format() -> None:
    sample = LoadSample(0.5, 0.25, 1 / 3, 2, 10, 4242)
    assert loadavg.render(sample) == b"0.50 0.25 0.33 2/10 4242\n"


def test_loadavg_render_clamps_negatives() -> None:
    assert loadavg.render(LoadSample(-1.0, 0.0, 12.345, -2, -3, -4)) == b"0.00 0.00 12.35 0/0 0\n"


def test_loadavg_render_parses_like_the_kernel_file() -> None:
    """What ``uptime``/``top`` do: three floats, then running/total and the last pid."""
    fields = loadavg.render(LoadSample(3.14159, 2.5, 1.0, 7, 812, 99999)).decode().split()
    assert [float(f) for f in fields[:3]] == [3.14, 2.5, 1.0]
    running, total = fields[3].split("/")
    assert (int(running), int(total), int(fields[4])) == (7, 812, 99999)


class FixedLoad:
    def __init__(self, sample: LoadSample | None) -> None:
        self.sample_value = sample
        self.asked: list[Path] = []

    def sample(self, cgroup: Path) -> LoadSample | None:
        self.asked.append(cgroup)
        return self.sample_value


@pytest.mark.parametrize("kind", KINDS)
def test_service_loadavg_uses_the_sampler_with_l(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host)
    source = FixedLoad(LoadSample(1.0, 0.5, 0.25, 1, 3, 500))
    service = ViewService(host.roots(), ViewOptions(loadavg=True), load_source=source)
    assert service.render("proc/loadavg", CT) == b"1.00 0.50 0.25 1/3 500\n"
    assert source.asked == [host.hierarchy_dir("cpu") / "ct"]


@pytest.mark.parametrize("kind", KINDS)
def test_service_loadavg_is_the_host_file_without_l(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host)
    source = FixedLoad(LoadSample(1.0, 0.5, 0.25, 1, 3, 500))
    service = ViewService(host.roots(), ViewOptions(loadavg=False), load_source=source)
    assert service.answer("proc/loadavg", CT) == b"0.50 0.40 0.30 2/300 4242\n"
    no_sample = ViewService(host.roots(), ViewOptions(loadavg=True), load_source=FixedLoad(None))
    assert no_sample.answer("proc/loadavg", CT) == b"0.50 0.40 0.30 2/300 4242\n"


# -- swaps -----------------------------------------------------------------------------------


def test_swaps_header_only_without_swap() -> None:
    assert swaps.render(0, 0) == swaps.HEADER.encode()
    assert swaps.render(0, 500) == swaps.HEADER.encode()
    assert swaps.render(-1, 0) == swaps.HEADER.encode()


def swap_line(text: bytes) -> tuple[str, str, int, int, int]:
    lines = text.decode().splitlines()
    assert lines[0].split() == ["Filename", "Type", "Size", "Used", "Priority"]
    assert len(lines) == 2
    name, kind, size, used, priority = lines[1].split()
    return name, kind, int(size), int(used), int(priority)


def test_swaps_one_virtual_line() -> None:
    assert swap_line(swaps.render(524288, 1024)) == ("none", "virtual", 524288, 1024, 0)


@pytest.mark.parametrize(("used", "shown"), [(-5, 0), (2048, 1024), (1024, 1024)])
def test_swaps_used_never_above_size(used: int, shown: int) -> None:
    assert swap_line(swaps.render(1024, used))[3] == shown


@pytest.mark.parametrize("kind", KINDS)
def test_service_swaps_with_a_swap_limit(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host)
    host.set_memory("/ct", GIB, 200 * MIB, swap_limit=512 * MIB, swap_usage=100 * MIB)
    text = host.service().render("proc/swaps", CT)
    assert swap_line(text) == ("none", "virtual", 524288, 102400, 0)


@pytest.mark.parametrize("kind", KINDS)
def test_service_swaps_header_only_with_swap_disabled(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host)
    host.set_memory("/ct", GIB, 200 * MIB, swap_limit=512 * MIB, swap_usage=100 * MIB)
    assert host.service(ViewOptions(swap=False)).render("proc/swaps", CT) == swaps.HEADER.encode()


@pytest.mark.parametrize("kind", KINDS)
def test_service_swaps_without_swap_accounting(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host)
    host.set_memory("/ct", GIB, 200 * MIB)
    assert host.service().render("proc/swaps", CT) == swaps.HEADER.encode()


@pytest.mark.parametrize("kind", KINDS)
def test_service_swaps_unlimited_is_capped_by_host_swap(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host)
    host.set_memory("/ct", None, 200 * MIB, swap_limit=None, swap_usage=100 * MIB)
    _, _, size, used, _ = swap_line(host.service().render("proc/swaps", CT))
    assert size == 8388604  # the host's SwapTotal
    assert used == 102400


# -- diskstats (pure) ------------------------------------------------------------------------


def disk(fields: int, major: int = 8, minor: int = 0, name: str = "sda") -> DiskLine:
    return DiskLine(major, minor, name, tuple(range(1, fields - 2)))


IO = IoCounters(
    read_ios=100,
    write_ios=20,
    discard_ios=3,
    read_bytes=1024 * 1024,
    write_bytes=4096,
    discard_bytes=8192,
    read_merged=5,
    write_merged=6,
    read_time_ms=70,
    write_time_ms=30,
    service_time_ms=90,
)


@pytest.mark.parametrize("fields", [14, 18, 20])
def test_diskstats_keeps_the_host_field_count(fields: int) -> None:
    text = diskstats.render((disk(fields),), IoRecord({(8, 0): IO})).decode()
    assert len(text.split()) == fields
    (parsed,) = parse_diskstats(text)
    expected = (100, 5, 2048, 70, 20, 6, 8, 30, 0, 90, 100, 3, 0, 16, 0, 0, 0)
    assert parsed.counters == expected[: fields - 3]
    assert (parsed.major, parsed.minor, parsed.name) == (8, 0, "sda")


def test_diskstats_layout_matches_the_kernel() -> None:
    text = diskstats.render((disk(20, 254, 0, "vda"),), IoRecord({(254, 0): IO}))
    assert text == b" 254       0 vda 100 5 2048 70 20 6 8 30 0 90 100 3 0 16 0 0 0\n"


def test_diskstats_bytes_become_512_byte_sectors() -> None:
    io = IoCounters(read_ios=1, read_bytes=1023, write_ios=1, write_bytes=512 * 7 + 100)
    (parsed,) = parse_diskstats(diskstats.render((disk(20),), IoRecord({(8, 0): io})).decode())
    assert parsed.counters[2] == 1  # sectors read
    assert parsed.counters[6] == 7  # sectors written


def test_diskstats_only_devices_with_io() -> None:
    host = (disk(20, 8, 0, "sda"), disk(20, 8, 16, "sdb"), disk(20, 7, 0, "loop0"))
    io = IoRecord({(8, 16): IO, (8, 0): IoCounters(read_bytes=4096), (9, 9): IO})
    text = diskstats.render(host, io).decode()
    assert [d.name for d in parse_diskstats(text)] == ["sdb"]


def test_diskstats_without_io_is_empty() -> None:
    assert diskstats.render((disk(20),), IoRecord({})) == b""


def test_diskstats_never_negative() -> None:
    io = IoCounters(read_ios=1, read_bytes=-4096, read_time_ms=-1)
    (parsed,) = parse_diskstats(diskstats.render((disk(20),), IoRecord({(8, 0): io})).decode())
    assert min(parsed.counters) == 0


counts = st.integers(min_value=-5, max_value=10**6)
io_counters = st.builds(
    IoCounters,
    read_ios=counts,
    write_ios=counts,
    discard_ios=counts,
    read_bytes=counts,
    write_bytes=counts,
    discard_bytes=counts,
    read_merged=counts,
    write_merged=counts,
    read_time_ms=counts,
    write_time_ms=counts,
    service_time_ms=counts,
)
HOST_DISKS = (disk(20, 8, 0, "sda"), disk(20, 8, 16, "sdb"))
io_records = st.builds(
    IoRecord, st.dictionaries(st.sampled_from([(8, 0), (8, 16), (9, 9)]), io_counters)
)


def _shown(text: bytes) -> dict[str, tuple[int, ...]]:
    return {d.name: d.counters for d in parse_diskstats(text.decode())}


@settings(max_examples=300, deadline=None)
@given(st.lists(io_records, min_size=1, max_size=8))
def test_diskstats_counters_never_go_back(records: list[IoRecord]) -> None:
    """Whatever the kernel's counts do between reads (a removed child's I/O leaves v1's
    recursive counts), no field a reader sees goes back and no device it saw vanishes."""
    state: diskstats.DiskState | None = None
    before: dict[str, tuple[int, ...]] = {}
    for record in records:
        text, state = diskstats.advance(HOST_DISKS, record, 7, state)
        now = _shown(text)
        assert set(before) <= set(now)
        for name, fields in before.items():
            assert all(new >= old for new, old in zip(now[name], fields, strict=True))
        assert all(min(fields) >= 0 for fields in now.values())
        before = now


@settings(max_examples=200, deadline=None)
@given(st.lists(io_records, min_size=1, max_size=6))
def test_diskstats_growing_counts_are_shown_as_they_are(records: list[IoRecord]) -> None:
    """While the kernel's counts only grow, the state changes nothing: every read is the
    stateless file."""
    state: diskstats.DiskState | None = None
    totals: dict[tuple[int, int], IoCounters] = {}
    for record in records:
        for device, io in record.devices.items():  # make the counts cumulative
            base = totals.get(device, IoCounters())
            totals[device] = IoCounters(
                *(max(0, a) + max(0, b) for a, b in zip(astuple(base), astuple(io), strict=True))
            )
        cumulative = IoRecord(dict(totals))
        text, state = diskstats.advance(HOST_DISKS, cumulative, 7, state)
        assert text == diskstats.render(HOST_DISKS, cumulative)


def test_diskstats_a_drop_is_held_and_later_io_counts_on() -> None:
    """A child with 30 of the cgroup's 180 reads is removed: the kernel's count falls to
    150; the reader keeps seeing 180, and 10 more reads make it 190 (not 180 until the
    kernel's count has caught up)."""
    host = (disk(20, 8, 0, "sda"),)
    first, state = diskstats.advance(host, IoRecord({(8, 0): IoCounters(read_ios=180)}), 1, None)
    after_removal, state = diskstats.advance(
        host, IoRecord({(8, 0): IoCounters(read_ios=150)}), 1, state
    )
    more, state = diskstats.advance(host, IoRecord({(8, 0): IoCounters(read_ios=160)}), 1, state)
    assert [_shown(text)["sda"][0] for text in (first, after_removal, more)] == [180, 180, 190]


def test_diskstats_a_device_whose_counts_vanish_keeps_its_line() -> None:
    host = (disk(20, 8, 0, "sda"),)
    _, state = diskstats.advance(host, IoRecord({(8, 0): IoCounters(write_ios=4)}), 1, None)
    text, _ = diskstats.advance(host, IoRecord({}), 1, state)
    assert _shown(text)["sda"][4] == 4


def test_diskstats_a_cgroup_made_again_starts_from_its_own_counts() -> None:
    host = (disk(20, 8, 0, "sda"),)
    _, state = diskstats.advance(host, IoRecord({(8, 0): IoCounters(read_ios=500)}), 1, None)
    text, _ = diskstats.advance(host, IoRecord({(8, 0): IoCounters(read_ios=3)}), 2, state)
    assert _shown(text)["sda"][0] == 3


# -- diskstats (service) ---------------------------------------------------------------------


def diskstats_of(host: FixtureHost) -> dict[str, tuple[int, ...]]:
    text = host.service().render("proc/diskstats", CT).decode()
    return {d.name: d.counters for d in parse_diskstats(text)}


@pytest.mark.parametrize("kind", ["v1", "hybrid"])
def test_service_diskstats_v1_throttle_files(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host)
    host.write(
        "blkio",
        "/ct",
        {
            "blkio.throttle.io_serviced_recursive": (
                "254:0 Read 57\n254:0 Write 12\n254:0 Sync 69\n254:0 Async 0\n"
                "254:0 Discard 0\n254:0 Total 69\n7:0 Read 0\n7:0 Write 0\nTotal 69"
            ),
            "blkio.throttle.io_service_bytes_recursive": (
                "254:0 Read 2097152\n254:0 Write 49152\n254:0 Sync 2146304\n254:0 Async 0\n"
                "254:0 Discard 0\n254:0 Total 2146304\nTotal 2146304"
            ),
        },
    )
    stats = diskstats_of(host)
    assert list(stats) == ["vda"]  # loop0 did no I/O
    vda = stats["vda"]
    assert len(vda) == 17  # the host prints 20 fields
    assert (vda[0], vda[2], vda[4], vda[6]) == (57, 4096, 12, 96)


THROTTLE_COUNTS = {
    "blkio.throttle.io_serviced_recursive": "254:0 Read 57\n254:0 Write 12\n254:0 Total 69\n"
    "Total 69",
    "blkio.throttle.io_service_bytes_recursive": "254:0 Read 2097152\n254:0 Write 49152\n"
    "254:0 Total 2146304\nTotal 2146304",
}
NOTHING_COUNTED = {
    "blkio.throttle.io_serviced_recursive": "Total 0",
    "blkio.throttle.io_service_bytes_recursive": "Total 0",
    "blkio.bfq.io_serviced_recursive": "Total 0",
    "blkio.bfq.io_service_bytes_recursive": "Total 0",
}


def _throttle_reads(reads: int) -> dict[str, str]:
    return {
        "blkio.throttle.io_serviced_recursive": f"254:0 Read {reads}\n254:0 Total {reads}\n",
        "blkio.throttle.io_service_bytes_recursive": f"254:0 Read {reads * 4096}\n",
    }


def test_service_diskstats_v1_a_removed_childs_io_is_not_taken_back(tmp_path: Path) -> None:
    """The kernel's v1 recursive counts fall by a child's I/O when the child is removed;
    the reader keeps its count, and a cgroup made again at the same path (a new directory)
    starts from its own."""
    host = FixtureHost(tmp_path, "v1")
    container(host)
    host.write("blkio", "/", _throttle_reads(900))
    service = host.service()
    reads = []
    for count in (180, 150, 160):
        host.write("blkio", "/ct", _throttle_reads(count))
        service.rendered.clear()
        reads.append(_shown(service.render("proc/diskstats", CT))["vda"][0])
    assert reads == [180, 180, 190]
    directory = host.cgroup_dir("blkio", "/ct")
    moved = directory.with_name("old-ct")
    directory.rename(moved)  # the old directory lives on, so the new one gets a new inode
    container(host)
    host.write("blkio", "/ct", _throttle_reads(3))
    service.rendered.clear()
    assert _shown(service.render("proc/diskstats", CT))["vda"][0] == 3


def test_service_diskstats_v1_where_the_kernel_counts_nothing_per_cgroup(tmp_path: Path) -> None:
    """Linux >= 6.10 without a throttle rule and without a BFQ device: every cgroup's
    files say "Total 0", the root's too. That is "not counted", not "no I/O": the host
    file, not an empty one."""
    host = FixtureHost(tmp_path, "v1")
    container(host)
    host.write("blkio", "/", NOTHING_COUNTED)
    host.write("blkio", "/ct", NOTHING_COUNTED)
    host_file = (tmp_path / "proc" / "diskstats").read_bytes()
    assert host_file
    assert host.service().answer("proc/diskstats", CT) == host_file


def test_service_diskstats_v1_from_bfq_when_only_bfq_counts(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v1")
    container(host)
    root = dict(NOTHING_COUNTED)
    root["blkio.bfq.io_serviced_recursive"] = "254:0 Read 900\n254:0 Total 900\nTotal 900"
    host.write("blkio", "/", root)
    own = dict(NOTHING_COUNTED)
    own["blkio.bfq.io_serviced_recursive"] = THROTTLE_COUNTS["blkio.throttle.io_serviced_recursive"]
    own["blkio.bfq.io_service_bytes_recursive"] = THROTTLE_COUNTS[
        "blkio.throttle.io_service_bytes_recursive"
    ]
    host.write("blkio", "/ct", own)
    vda = diskstats_of(host)["vda"]
    assert (vda[0], vda[2], vda[4], vda[6]) == (57, 4096, 12, 96)


def test_service_diskstats_v1_a_counting_throttle_layer_is_read(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v1")
    container(host)
    root = dict(NOTHING_COUNTED)
    root["blkio.throttle.io_serviced_recursive"] = "254:0 Read 900\n254:0 Total 900\nTotal 900"
    host.write("blkio", "/", root)
    host.write("blkio", "/ct", {**NOTHING_COUNTED, **THROTTLE_COUNTS})
    vda = diskstats_of(host)["vda"]
    assert (vda[0], vda[4]) == (57, 12)


def test_service_diskstats_v1_each_device_from_the_layer_that_counts_it(tmp_path: Path) -> None:
    """Linux >= 6.10 with a throttle rule on one disk only: the throttle layer counts
    that disk (vda); another one (zram0) only BFQ counts. Each comes from its own."""
    host = FixtureHost(tmp_path, "v1")
    container(host)
    host.write(
        "blkio",
        "/",
        {
            "blkio.throttle.io_serviced_recursive": "254:0 Read 900\n254:0 Total 900\nTotal 900",
            "blkio.throttle.io_service_bytes_recursive": "254:0 Total 1\nTotal 1",
            "blkio.bfq.io_serviced_recursive": "253:0 Read 50\n253:0 Total 50\nTotal 50",
            "blkio.bfq.io_service_bytes_recursive": "253:0 Total 1\nTotal 1",
        },
    )
    host.write(
        "blkio",
        "/ct",
        {
            "blkio.throttle.io_serviced_recursive": "254:0 Read 57\n254:0 Write 12\n"
            "253:0 Read 0\n253:0 Total 69\nTotal 69",
            "blkio.throttle.io_service_bytes_recursive": "254:0 Read 4096\nTotal 4096",
            "blkio.bfq.io_serviced_recursive": "253:0 Read 5\n253:0 Write 3\nTotal 8",
            "blkio.bfq.io_service_bytes_recursive": "253:0 Read 1024\n253:0 Write 512\nTotal 1",
        },
    )
    stats = diskstats_of(host)
    assert sorted(stats) == ["vda", "zram0"]
    assert (stats["vda"][0], stats["vda"][4]) == (57, 12)
    assert (stats["zram0"][0], stats["zram0"][4], stats["zram0"][2]) == (5, 3, 2)


BFQ_ON_LOOP0_ONLY = {
    **NOTHING_COUNTED,
    "blkio.bfq.io_serviced_recursive": "7:0 Read 30\n7:0 Total 30\nTotal 30",
}
LOOP0_OWN = {
    **NOTHING_COUNTED,
    "blkio.bfq.io_serviced_recursive": "7:0 Read 30\n7:0 Total 30\nTotal 30",
    "blkio.bfq.io_service_bytes_recursive": "7:0 Read 122880\nTotal 122880",
}


def _host_disks(host: FixtureHost, lines: str) -> None:
    (host.proc / "diskstats").write_text(lines)


def _sysfs_block(host: FixtureHost, path: str, device: str, partition: bool = False) -> Path:
    """``/sys/devices/.../block/<path>`` with its ``dev`` file, linked from /sys/dev/block."""
    block = host.sys / "devices/virtual/block" / path
    block.mkdir(parents=True, exist_ok=True)
    (block / "dev").write_text(f"{device}\n")
    if partition:
        (block / "partition").write_text("1\n")
    link = host.sys / "dev/block" / device
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(block)
    return block


def _stacked(host: FixtureHost, member: tuple[str, str], holder: tuple[str, str]) -> None:
    """A device-mapper device ``holder`` on ``member`` (name, M:m each), linked both ways
    in sysfs as the kernel links them (``holders/`` and ``slaves/``)."""
    below, above = _sysfs_block(host, *member), _sysfs_block(host, *holder)
    (below / "holders").mkdir()
    (below / "holders" / holder[0]).symlink_to(above)
    (above / "slaves").mkdir()
    (above / "slaves" / member[0]).symlink_to(below)


BUSY = " 100 0 800 10 50 0 400 5 0 15 15 0 0 0 0 0 0\n"


def test_service_diskstats_v1_a_busy_device_no_layer_counts_gets_the_host_file(
    tmp_path: Path,
) -> None:
    """BFQ on one loop device, vda (which the container writes to) on mq-deadline and
    without a throttle rule: the container's vda I/O is counted nowhere. Its file would
    list loop0 only (or nothing), claiming no vda I/O: the host's file instead."""
    host = FixtureHost(tmp_path, "v1")
    container(host)
    _host_disks(host, "   7       0 loop0" + BUSY + " 254       0 vda" + BUSY)
    host.write("blkio", "/", BFQ_ON_LOOP0_ONLY)
    host.write("blkio", "/ct", LOOP0_OWN)
    host_file = (host.proc / "diskstats").read_bytes()
    assert host.service().answer("proc/diskstats", CT) == host_file


def test_service_diskstats_v1_idle_uncounted_devices_do_not_matter(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v1")
    container(host)
    _host_disks(host, "   7       0 loop0" + BUSY + " 254       0 vda" + " 0" * 17 + "\n")
    host.write("blkio", "/", BFQ_ON_LOOP0_ONLY)
    host.write("blkio", "/ct", LOOP0_OWN)
    assert list(diskstats_of(host)) == ["loop0"]


def test_service_diskstats_v1_partitions_and_stacked_devices_count_on_their_disks(
    tmp_path: Path,
) -> None:
    """vda is counted (BFQ); the host's I/O on its partition vda1 and on dm-0 (LVM on
    vda1) is counted on vda, so the container's own file is served."""
    host = FixtureHost(tmp_path, "v1")
    container(host)
    _host_disks(
        host,
        " 254       0 vda" + BUSY + " 254       1 vda1" + BUSY + " 252       0 dm-0" + BUSY,
    )
    vda = _sysfs_block(host, "vda", "254:0")
    vda1 = _sysfs_block(host, "vda/vda1", "254:1", partition=True)
    dm = _sysfs_block(host, "dm-0", "252:0")
    (dm / "slaves").mkdir()
    (dm / "slaves" / "vda1").symlink_to(vda1)
    assert vda.is_dir()
    counts = "254:0 Read 30\n254:0 Total 30\nTotal 30"
    host.write("blkio", "/", {**NOTHING_COUNTED, "blkio.bfq.io_serviced_recursive": counts})
    host.write("blkio", "/ct", {**NOTHING_COUNTED, "blkio.bfq.io_serviced_recursive": counts})
    assert list(diskstats_of(host)) == ["vda"]


def test_service_diskstats_v1_devices_counted_elsewhere_do_not_force_the_host_file(
    tmp_path: Path,
) -> None:
    """vda is counted (BFQ). A loop device with I/O (its backing file's I/O lands on the
    disk), a CD drive udev read at boot (removable) and sdb, a path of the multipath
    device dm-1 that BFQ counts on vda's side too (its requests come from dm-1): none of
    them hides a container's I/O, so the container's own file is served."""
    host = FixtureHost(tmp_path, "v1")
    container(host)
    _host_disks(
        host,
        " 254       0 vda" + BUSY + "   7       3 loop3" + BUSY + "  11       0 sr0" + BUSY
        + "   8      16 sdb" + BUSY + " 252       1 dm-1" + BUSY,
    )  # fmt: skip
    _sysfs_block(host, "vda", "254:0")
    _sysfs_block(host, "loop3", "7:3")
    cdrom = _sysfs_block(host, "sr0", "11:0")
    (cdrom / "removable").write_text("1\n")
    _stacked(host, ("sdb", "8:16"), ("dm-1", "252:1"))
    counts = "254:0 Read 30\n254:0 Total 30\n252:1 Read 5\n252:1 Total 5\nTotal 35"
    host.write("blkio", "/", {**NOTHING_COUNTED, "blkio.bfq.io_serviced_recursive": counts})
    host.write("blkio", "/ct", {**NOTHING_COUNTED, "blkio.bfq.io_serviced_recursive": counts})
    assert sorted(diskstats_of(host)) == ["dm-1", "vda"]


def test_service_diskstats_v1_a_stacked_device_on_uncounted_members_is_uncounted(
    tmp_path: Path,
) -> None:
    """dm-0 on sdc, neither counted (vda is): the container's I/O there is unknown."""
    host = FixtureHost(tmp_path, "v1")
    container(host)
    _host_disks(
        host, " 254       0 vda" + BUSY + "   8      32 sdc" + BUSY + " 252       0 dm-0" + BUSY
    )
    _stacked(host, ("sdc", "8:32"), ("dm-0", "252:0"))
    counts = "254:0 Read 30\n254:0 Total 30\nTotal 30"
    host.write("blkio", "/", {**NOTHING_COUNTED, "blkio.bfq.io_serviced_recursive": counts})
    host.write("blkio", "/ct", {**NOTHING_COUNTED, "blkio.bfq.io_serviced_recursive": counts})
    assert host.service().answer("proc/diskstats", CT) == (host.proc / "diskstats").read_bytes()


def test_service_diskstats_v1_a_device_stays_with_the_layer_counting_it_longest(
    tmp_path: Path,
) -> None:
    """A throttle rule set later on a BFQ disk makes the throttle layer count it too, from
    then on: the disk stays with BFQ's counts (since boot), never drops to the new ones."""
    host = FixtureHost(tmp_path, "v1")
    container(host)
    host.write(
        "blkio",
        "/",
        {
            "blkio.throttle.io_serviced_recursive": "254:0 Read 10\n254:0 Total 10\nTotal 10",
            "blkio.bfq.io_serviced_recursive": "254:0 Read 900\n254:0 Total 900\nTotal 900",
        },
    )
    host.write(
        "blkio",
        "/ct",
        {
            "blkio.throttle.io_serviced_recursive": "254:0 Read 2\n254:0 Total 2\nTotal 2",
            "blkio.throttle.io_service_bytes_recursive": "254:0 Read 1024\nTotal 1024",
            "blkio.bfq.io_serviced_recursive": "254:0 Read 57\n254:0 Total 57\nTotal 57",
            "blkio.bfq.io_service_bytes_recursive": "254:0 Read 4096\nTotal 4096",
        },
    )
    assert diskstats_of(host)["vda"][0] == 57


def test_service_diskstats_v1_a_device_keeps_its_layer_when_the_totals_cross(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The throttle layer counts bios, BFQ requests: once a rule is set the throttle total
    can overtake BFQ's. The device keeps the layer it was served from."""
    monkeypatch.setattr(reader_module, "BLKIO_RECHECK", 0.0)
    host = FixtureHost(tmp_path, "v1")
    container(host)
    own = {
        "blkio.throttle.io_serviced_recursive": "254:0 Read 2\n254:0 Total 2\nTotal 2",
        "blkio.throttle.io_service_bytes_recursive": "254:0 Read 1024\nTotal 1024",
        "blkio.bfq.io_serviced_recursive": "254:0 Read 57\n254:0 Total 57\nTotal 57",
        "blkio.bfq.io_service_bytes_recursive": "254:0 Read 4096\nTotal 4096",
    }
    host.write("blkio", "/ct", own)
    service = host.service()
    for throttle_total in (10, 2000):
        host.write(
            "blkio",
            "/",
            {
                "blkio.throttle.io_serviced_recursive": f"254:0 Total {throttle_total}\nTotal 1",
                "blkio.bfq.io_serviced_recursive": "254:0 Read 900\n254:0 Total 900\nTotal 900",
            },
        )
        text = service.render("proc/diskstats", CT).decode()
        assert {d.name: d.counters for d in parse_diskstats(text)}["vda"][0] == 57


@pytest.mark.parametrize("kind", ["v1", "hybrid"])
def test_service_diskstats_v1_cfq_files(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    container(host)
    ms = 1_000_000
    host.write(
        "blkio",
        "/ct",
        {
            "blkio.io_serviced_recursive": "254:0 Read 10\n254:0 Write 4\n254:0 Total 14\nTotal 14",
            "blkio.io_service_bytes_recursive": "254:0 Read 40960\n254:0 Write 8192\nTotal 49152",
            "blkio.io_merged_recursive": "254:0 Read 2\n254:0 Write 1\nTotal 3",
            "blkio.io_wait_time_recursive": f"254:0 Read {5 * ms}\n254:0 Write {3 * ms}",
            "blkio.io_service_time_recursive": (
                f"254:0 Read {7 * ms}\n254:0 Write {1 * ms}\n254:0 Total {8 * ms}"
            ),
        },
    )
    vda = diskstats_of(host)["vda"]
    assert vda[:11] == (10, 2, 80, 12, 4, 1, 16, 4, 0, 8, 16)


def test_service_diskstats_v2_io_stat(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")
    container(host)
    host.write(
        "io",
        "/ct",
        {
            "io.stat": (
                "254:0 rbytes=1048576 wbytes=8192 rios=100 wios=2 dbytes=4096 dios=1\n"
                "7:0 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0"
            )
        },
    )
    text = host.service().render("proc/diskstats", CT)
    assert text == b" 254       0 vda 100 0 2048 0 2 0 16 0 0 0 0 1 0 8 0 0 0\n"


@pytest.mark.parametrize("fields", [14, 18])
def test_service_diskstats_older_host_field_counts(tmp_path: Path, fields: int) -> None:
    host = FixtureHost(tmp_path, "v2")
    container(host)
    (host.proc / "diskstats").write_text(
        " 254       0 vda " + " ".join(["9"] * (fields - 3)) + "\n"
    )
    host.write("io", "/ct", {"io.stat": "254:0 rbytes=512 wbytes=0 rios=1 wios=0"})
    text = host.service().render("proc/diskstats", CT).decode()
    assert len(text.split()) == fields
    assert text.split()[3:6] == ["1", "0", "1"]


def test_service_diskstats_v2_without_io_stat_is_the_host_file(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")
    container(host)
    assert host.service().answer("proc/diskstats", CT) == (host.proc / "diskstats").read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_service_diskstats_root_cgroup_is_the_host_file(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    assert host.service().answer("proc/diskstats", 1) == (host.proc / "diskstats").read_bytes()


# -- pressure --------------------------------------------------------------------------------

PSI = (
    "some avg10=1.50 avg60=0.75 avg300=0.10 total=123456\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)
HOST_PSI = "some avg10=9.99 avg60=9.99 avg300=9.99 total=999999\n"


def write_host_pressure(host: FixtureHost) -> None:
    (host.proc / "pressure").mkdir(exist_ok=True)
    for resource in ("cpu", "io", "memory"):
        (host.proc / "pressure" / resource).write_text(HOST_PSI)


def test_pressure_view_copies() -> None:
    assert pressure.render(PSI.encode()) == PSI.encode()


@pytest.mark.parametrize("resource", ["cpu", "io", "memory"])
def test_service_pressure_v2_is_the_cgroup_file(tmp_path: Path, resource: str) -> None:
    host = FixtureHost(tmp_path, "v2")
    write_host_pressure(host)
    container(host)
    (host.cgroup / "ct" / f"{resource}.pressure").write_text(PSI)
    service = host.service()
    assert f"proc/pressure/{resource}" in service.served_paths()
    assert service.render(f"proc/pressure/{resource}", CT) == PSI.encode()
    assert service.answer(f"proc/pressure/{resource}", CT) == PSI.encode()


def test_service_pressure_v2_without_psi_is_the_host_file(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")  # booted with psi=0: no *.pressure files
    write_host_pressure(host)
    container(host)
    assert host.service().answer("proc/pressure/io", CT) == HOST_PSI.encode()


@pytest.mark.parametrize("kind", ["v1", "hybrid"])
def test_service_pressure_v1_is_the_host_file(tmp_path: Path, kind: str) -> None:
    host = FixtureHost(tmp_path, kind)
    write_host_pressure(host)
    container(host)
    service = host.service()
    # Not served at all without a v2 hierarchy that has controllers...
    assert not any(path.startswith("proc/pressure/") for path in service.served_paths())
    # ...and asked anyway, the answer is the host's file.
    assert service.answer("proc/pressure/memory", CT) == HOST_PSI.encode()


def test_service_pressure_root_cgroup_is_the_host_file(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")
    write_host_pressure(host)
    (host.cgroup / "cpu.pressure").write_text(PSI)
    assert host.service().answer("proc/pressure/cpu", 1) == HOST_PSI.encode()
