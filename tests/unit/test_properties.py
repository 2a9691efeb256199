"""Property tests over the memory and CPU views, with arbitrary cgroup and host figures.

Whatever a cgroup file says (usage above the limit, a zero limit, no limit, huge or negative
memory.stat values), what a container reads must still make sense to ``free``, ``top``,
psutil and JVMs: no wrapped ~2**64 numbers, no "available" above "total", no fewer than
one CPU, counters that never run backwards.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procfs_view.cgroup.discovery import CgroupMembership, within_init
from procfs_view.cgroup.reader import memory_stat_from
from procfs_view.cgroup.records import (
    CpuQuota,
    CpuTimes,
    CpuUsage,
    MemoryRecord,
    MemoryStat,
    SwapRecord,
)
from procfs_view.errors import CgroupDataError
from procfs_view.host import CpuLine, HostMeminfo, HostStat, parse_meminfo, parse_stat
from procfs_view.parsers import (
    V1_UNLIMITED_THRESHOLD,
    KeyPicker,
    parse_cpu_list,
    parse_flat_keyed,
    parse_usage_all,
)
from procfs_view.views import cpu_online, meminfo, stat, uptime
from procfs_view.views.cpus import VisibleCpus, visible_cpus

DATA = Path(__file__).parent.parent / "data"
SAMPLE_MEMINFO = (DATA / "meminfo.x86_64").read_text()
USER_HZ = 100
NS = 1_000_000_000
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies: memory ----------------------------------------------------------------------

#: Byte counts as a cgroup file may hold them: small, page-sized, around 2**32 and 2**63.
byte_counts = st.one_of(
    st.integers(min_value=0, max_value=1 << 20),
    st.integers(min_value=0, max_value=1 << 40),
    st.integers(min_value=(1 << 63) - (1 << 20), max_value=(1 << 64) + 1),
)
#: What CgroupReader hands the view as a limit: None (max, -1, PAGE_COUNTER_MAX) or a value.
limits = st.one_of(
    st.none(),
    st.just(0),
    st.integers(min_value=0, max_value=1 << 36),
    st.integers(min_value=0, max_value=V1_UNLIMITED_THRESHOLD - 1),
)
stat_values = st.one_of(
    st.integers(min_value=0, max_value=1 << 40),
    st.integers(min_value=-(1 << 63), max_value=1 << 64),
)
V1_KEYS = (
    "total_rss", "total_cache", "total_shmem", "total_mapped_file", "total_rss_huge",
    "total_active_anon", "total_inactive_anon", "total_active_file", "total_inactive_file",
    "total_unevictable", "total_dirty", "total_writeback",
)  # fmt: skip
V2_KEYS = (
    "anon", "file", "shmem", "file_mapped", "anon_thp", "active_anon", "inactive_anon",
    "active_file", "inactive_file", "unevictable", "file_dirty", "file_writeback",
    "slab_reclaimable", "slab_unreclaimable", "shmem_thp", "kernel_stack", "pagetables",
    "percpu",
)  # fmt: skip


@st.composite
def memory_stats(draw: st.DrawFn) -> MemoryStat:
    """memory.stat as the reader builds it (v1 or v2 keys, any subset), or a record built
    directly with negative fields (a view must not trust its inputs to be clamped)."""
    how = draw(st.sampled_from(["v1", "v2", "direct"]))
    if how == "direct":
        names = (
            "anon", "file", "shmem", "active_anon", "inactive_anon", "active_file",
            "inactive_file", "unevictable", "mapped", "anon_thp", "dirty", "writeback",
        )  # fmt: skip
        fields = {name: draw(stat_values) for name in names}
        slab = draw(st.one_of(st.none(), stat_values))
        return MemoryStat(**fields, slab_reclaimable=slab, slab_unreclaimable=slab)
    keys = V1_KEYS if how == "v1" else V2_KEYS
    values = draw(st.dictionaries(st.sampled_from(keys), stat_values))
    return memory_stat_from(values, 1 if how == "v1" else 2)


swap_records = st.one_of(
    st.none(),
    st.builds(
        SwapRecord,
        limit=limits,
        usage=byte_counts,
        swappiness=st.sampled_from([0, 1, 60, 100]),
    ),
)
memory_records = st.builds(
    MemoryRecord, limit=limits, usage=byte_counts, stat=memory_stats(), swap=swap_records
)


@st.composite
def host_meminfos(draw: st.DrawFn) -> HostMeminfo:
    """The sample host with random MemTotal/SwapTotal (and other kB lines), from 0 to huge."""
    kib = st.one_of(
        st.integers(min_value=0, max_value=1 << 26),
        st.integers(min_value=0, max_value=(1 << 62) - 1),
    )
    total = draw(kib)
    swap_total = draw(st.one_of(st.just(0), kib))
    lines = []
    for line in SAMPLE_MEMINFO.splitlines():
        key, _, rest = line.partition(":")
        if key == "MemTotal":
            value = total
        elif key == "SwapTotal":
            value = swap_total
        elif rest.strip().endswith("kB") and key != "Hugepagesize":
            value = draw(st.one_of(st.just(int(rest.split()[0])), kib))
        else:
            lines.append(line)
            continue
        lines.append(f"{key}: {value} kB")
    return parse_meminfo("\n".join(lines) + "\n")


def parse_like_psutil(text: bytes) -> dict[bytes, int]:
    """psutil.virtual_memory()'s parser: ``fields = line.split(); int(fields[1]) * 1024``."""
    mems: dict[bytes, int] = {}
    for line in text.splitlines():
        fields = line.split()
        assert fields[0].endswith(b":"), line
        assert len(fields) in (2, 3), line
        assert fields[2:] in ([], [b"kB"]), line
        mems[fields[0]] = int(fields[1]) * 1024
    return mems


# -- meminfo properties ----------------------------------------------------------------------


@SETTINGS
@given(host=host_meminfos(), memory=memory_records, swap_enabled=st.booleans())
def test_meminfo_values_are_sane(
    host: HostMeminfo, memory: MemoryRecord, swap_enabled: bool
) -> None:
    text = meminfo.render(host, memory, swap_enabled)
    lines = text.decode().splitlines()
    assert lines[0].startswith("MemTotal:")  # free and older procps expect it first
    assert len(lines) == len(host.entries)  # every host line is still there, once
    kb = {key.decode().rstrip(":"): value // 1024 for key, value in parse_like_psutil(text).items()}
    for key, value in kb.items():
        assert 0 <= value < 2**63, (key, value)  # never negative, never wrapped

    total = kb["MemTotal"]
    host_total = host.kb("MemTotal")
    assert kb["MemFree"] <= kb["MemAvailable"] <= total <= host_total
    if host_total > 0:
        assert total > 0  # a MemTotal of 0 crashes ps (lxcfs#389)
    assert kb["SwapFree"] <= kb["SwapTotal"] <= host.kb("SwapTotal")
    if not swap_enabled or memory.swap is None:
        assert kb["SwapTotal"] == 0
    # free's buff/cache fits in what is in use: its "used" is never negative.
    assert kb["Buffers"] + kb["Cached"] + kb["SReclaimable"] <= total - kb["MemFree"]
    units = {entry.key: entry.unit for entry in host.entries}
    for key, value in kb.items():
        # Hugepagesize is the size of one huge page, not an amount of memory.
        if units[key] == "kB" and key not in ("SwapTotal", "SwapFree", "Hugepagesize"):
            assert value <= total, (key, value, total)


@SETTINGS
@given(host=host_meminfos(), memory=memory_records)
def test_meminfo_follows_the_limit_and_usage(host: HostMeminfo, memory: MemoryRecord) -> None:
    values = meminfo.compute(host, memory, True)
    host_total = host.kb("MemTotal")
    expected_total = host_total if memory.limit is None else min(host_total, memory.limit // 1024)
    assert values["MemTotal"] == max(expected_total, min(host_total, 4))
    if memory.usage // 1024 >= values["MemTotal"]:
        assert values["MemFree"] == 0  # usage above the limit: nothing free, no wrap (#115)
    else:
        assert values["MemFree"] == values["MemTotal"] - memory.usage // 1024


@settings(max_examples=60, deadline=None)
@given(host=host_meminfos(), memory=memory_records)
def test_meminfo_is_read_by_psutil(host: HostMeminfo, memory: MemoryRecord) -> None:
    """The real psutil.virtual_memory() on the rendered file: what `free` would print."""
    text = meminfo.render(host, memory, True)
    values = meminfo.compute(host, memory, True)
    saved = psutil.PROCFS_PATH
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "meminfo").write_bytes(text)
        psutil.PROCFS_PATH = directory
        try:
            vm = psutil.virtual_memory()
        finally:
            psutil.PROCFS_PATH = saved
    assert vm.total == values["MemTotal"] * 1024
    assert vm.free == values["MemFree"] * 1024
    assert 0 <= vm.available <= vm.total
    assert 0 <= vm.used <= vm.total
    if values["MemAvailable"] > 0:
        assert vm.available == values["MemAvailable"] * 1024


# -- CPU: visible CPUs -----------------------------------------------------------------------

cpu_sets = st.sets(st.integers(min_value=0, max_value=63), max_size=64)
quotas = st.builds(
    CpuQuota,
    st.one_of(
        st.none(),
        st.floats(min_value=0.0, max_value=128.0),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
)


@SETTINGS
@given(
    cpuset=st.one_of(st.none(), cpu_sets),
    online=cpu_sets.filter(bool),
    quota=quotas,
    cpu_view=st.booleans(),
)
def test_visible_cpus_between_one_and_host_online(
    cpuset: set[int] | None, online: set[int], quota: CpuQuota, cpu_view: bool
) -> None:
    listed = None if cpuset is None else sorted(cpuset)
    cpus = visible_cpus(listed, sorted(online), quota, cpu_view)
    assert 1 <= cpus.count <= len(online)
    assert set(cpus.physical) <= online
    assert list(cpus.physical) == sorted(set(cpus.physical))
    allowed = (cpuset or set()) & online
    if allowed:
        assert set(cpus.physical) <= allowed
    if cpu_view and quota.cpus is not None and math.isfinite(quota.cpus) and quota.cpus > 0:
        assert cpus.count == min(len(allowed or online), max(1, math.ceil(quota.cpus)))
    # nproc (the online file) and the cpuinfo/stat views agree on the count.
    shown = parse_cpu_list(cpu_online.render(cpus).decode())
    assert len(shown) == cpus.count
    if cpus.renumbered:
        assert shown == tuple(range(cpus.count))
    else:
        assert shown == cpus.physical


# -- CPU: /proc/stat -------------------------------------------------------------------------

TICK_FIELDS = 10


def host_stat(per_cpu: list[list[int]]) -> HostStat:
    total = [sum(column) for column in zip(*per_cpu, strict=True)]
    lines = [f"cpu  {' '.join(map(str, total))}"]
    lines += [f"cpu{n} {' '.join(map(str, ticks))}" for n, ticks in enumerate(per_cpu)]
    lines += ["intr 1 0", "ctxt 5", "btime 1700000000", "processes 9"]
    return parse_stat("\n".join(lines) + "\n")


#: A counter as the kernel prints it, or something a broken or foreign file might hold.
stat_counters = st.one_of(
    st.integers(0, 10**12).map(str),
    st.sampled_from(["-3", "x", "1_0", "cpu7", "", "1 2"]),
)


@st.composite
def stat_cpu_rows(draw: st.DrawFn, width: int) -> list[tuple[int, list[str]]]:
    """Per-CPU rows, mostly with the aggregate line's ``width`` counters of digits (the
    kernel's layout, which takes the one-go path), some with other counts or garbage."""
    rows = []
    for _ in range(draw(st.integers(0, 10))):
        uniform = draw(st.integers(0, 9)) > 1
        counters = draw(
            st.lists(st.integers(0, 10**12).map(str), min_size=width, max_size=width)
            if uniform
            else st.lists(stat_counters, min_size=2, max_size=12)
        )
        rows.append((draw(st.integers(0, 9)), counters))
    return rows


@SETTINGS
@given(
    width_and_rows=st.integers(4, 11).flatmap(
        lambda width: st.tuples(st.just(width), stat_cpu_rows(width))
    ),
    wanted=st.lists(st.integers(0, 11), max_size=16),
    fields=st.integers(0, 12),
)
def test_counter_sums_are_the_per_line_sums(
    width_and_rows: tuple[int, list[tuple[int, list[str]]]], wanted: list[int], fields: int
) -> None:
    """``counter_sums`` converts the kernel's uniform lines in one go when most are wanted:
    whatever the lines hold (other counts of counters, garbage, a name among them), it
    gives what converting each wanted line gives, and raises where that raises (a broken
    line nobody asked for raises in neither)."""
    width, rows = width_and_rows
    lines = ["cpu  " + " ".join(["1"] * width)]
    lines += [f"cpu{number} {' '.join(counters)}" for number, counters in rows]
    text = "\n".join(lines) + "\nctxt 1\n"
    expected: list[int | None] | type[CgroupDataError] = []
    try:
        line_by_line = parse_stat(text)
        for number in wanted:
            line = line_by_line.cpu(number)
            expected.append(None if line is None else sum(line.ticks[:fields]))
    except CgroupDataError:
        expected = CgroupDataError
    host = parse_stat(text)
    try:
        got: list[int | None] | type[CgroupDataError] = host.counter_sums(wanted, fields)
    except CgroupDataError:
        got = CgroupDataError
    assert got == expected


def ticks_of(ns: int) -> int:
    return ns * USER_HZ // NS


@st.composite
def stat_scenarios(
    draw: st.DrawFn,
) -> tuple[HostStat, HostStat, CpuUsage, CpuUsage, VisibleCpus]:
    """Two readings of /proc/stat and of the cgroup's usage, the later one grown: the cgroup
    by arbitrary amounts, each host CPU at least as fast as the cgroup's share of it."""
    n_host = draw(st.integers(min_value=1, max_value=8))
    tick = st.integers(min_value=0, max_value=10**9)
    before_host = [[draw(tick) for _ in range(TICK_FIELDS)] for _ in range(n_host)]
    cpuset = draw(st.one_of(st.none(), st.sets(st.integers(0, n_host - 1), min_size=1)))
    cpus = visible_cpus(
        None if cpuset is None else sorted(cpuset),
        range(n_host),
        draw(quotas),
        draw(st.booleans()),
    )
    ns = st.integers(min_value=0, max_value=10**15)
    grow = st.integers(min_value=0, max_value=10**13)
    per_cpu_mode = draw(st.booleans())  # v1 cpuacct.usage_all, or v2 cpu.stat totals
    before_times = {c: CpuTimes(draw(ns), draw(ns)) for c in range(n_host)}
    after_times = {
        c: CpuTimes(t.user + draw(grow), t.system + draw(grow)) for c, t in before_times.items()
    }

    def usage(times: dict[int, CpuTimes]) -> CpuUsage:
        total = CpuTimes(sum(t.user for t in times.values()), sum(t.system for t in times.values()))
        return CpuUsage(total, dict(times) if per_cpu_mode else None)

    before, after = usage(before_times), usage(after_times)
    spread = cpus.renumbered or not per_cpu_mode
    after_host = []
    for number, ticks in enumerate(before_host):
        if spread:  # the total is split evenly over the visible CPUs
            du = ticks_of(after.total.user - before.total.user) + 1
            ds = ticks_of(after.total.system - before.total.system) + 1
            needed = -(-du // cpus.count) + -(-ds // cpus.count)
        else:  # usage of this very CPU; +1 per field for the ns -> tick rounding
            b, a = before_times[number], after_times[number]
            needed = ticks_of(a.user - b.user) + ticks_of(a.system - b.system) + 2
        extra = [draw(st.integers(min_value=0, max_value=10**6)) for _ in range(TICK_FIELDS)]
        grown = [t + e for t, e in zip(ticks, extra, strict=True)]
        grown[draw(st.integers(min_value=0, max_value=7))] += needed
        after_host.append(grown)
    return host_stat(before_host), host_stat(after_host), before, after, cpus


@SETTINGS
@given(stat_scenarios())
def test_stat_counters_never_go_backwards(
    scenario: tuple[HostStat, HostStat, CpuUsage, CpuUsage, VisibleCpus],
) -> None:
    host_before, host_after, usage_before, usage_after, cpus = scenario
    before = stat.compute(host_before, usage_before, cpus, USER_HZ)
    after = stat.compute(host_after, usage_after, cpus, USER_HZ)
    assert [line.name for line in after] == [line.name for line in before]
    for old, new in zip(before, after, strict=True):
        for field, (a, b) in enumerate(zip(old.ticks, new.ticks, strict=True)):
            assert b >= a, (new.name, field, a, b)


@SETTINGS
@given(stat_scenarios())
def test_stat_cpu_line_is_the_sum_of_the_per_cpu_lines(
    scenario: tuple[HostStat, HostStat, CpuUsage, CpuUsage, VisibleCpus],
) -> None:
    host, _, usage, _, cpus = scenario
    text = stat.render(host, usage, cpus, USER_HZ).decode()
    parsed = parse_stat(text)  # what top and mpstat parse
    assert len(parsed.per_cpu) == cpus.count
    assert [line.number for line in parsed.per_cpu] == [
        cpus.shown_number(i) for i in range(cpus.count)
    ]
    for field in range(len(parsed.total.ticks)):
        assert parsed.total.ticks[field] == sum(line.ticks[field] for line in parsed.per_cpu)
    assert all(value >= 0 for line in (parsed.total, *parsed.per_cpu) for value in line.ticks)
    assert parsed.other_lines == host.other_lines
    # Each visible CPU's line adds up to that host CPU's elapsed ticks (top's denominator),
    # unless the cgroup claims more than the CPU had (then idle is 0, not negative).
    for index, line in enumerate(parsed.per_cpu):
        host_line = host.cpu(cpus.physical[index])
        assert host_line is not None
        elapsed = sum(host_line.ticks[:8])
        busy = line.ticks[0] + line.ticks[2]
        assert sum(line.ticks[:8]) == max(elapsed, busy)


@SETTINGS
@given(
    user=st.integers(min_value=0, max_value=10**16),
    system=st.integers(min_value=0, max_value=10**16),
    count=st.integers(min_value=1, max_value=64),
)
def test_stat_spread_usage_adds_up(user: int, system: int, count: int) -> None:
    """v2 (and the CPU view) spread the cgroup's total over the visible CPUs: nothing lost."""
    cpus = VisibleCpus(tuple(range(count)), renumbered=True)
    busy = stat.per_cpu_busy(CpuUsage(CpuTimes(user, system)), cpus, USER_HZ)
    assert sum(u for u, _ in busy) == ticks_of(user)
    assert sum(s for _, s in busy) == ticks_of(system)
    assert max(u for u, _ in busy) - min(u for u, _ in busy) <= 1


@st.composite
def stat_sequences(
    draw: st.DrawFn,
) -> tuple[list[HostStat], list[CpuUsage], VisibleCpus, float | None]:
    """Several reads in a row where the cgroup's usage and the host's ticks each grow by
    arbitrary amounts, with no relation between the two (the cgroup may appear busier than
    the host CPUs it runs on: ns vs tick accounting, the v2 even split, a parent's quota)."""
    n_host = draw(st.integers(min_value=1, max_value=6))
    cpuset = draw(st.one_of(st.none(), st.sets(st.integers(0, n_host - 1), min_size=1)))
    cpus = visible_cpus(
        None if cpuset is None else sorted(cpuset), range(n_host), draw(quotas), draw(st.booleans())
    )
    quota = draw(st.one_of(st.none(), st.floats(min_value=0.01, max_value=16.0)))
    per_cpu_mode = draw(st.booleans())
    host_ticks = [
        [draw(st.integers(min_value=0, max_value=10**8)) for _ in range(TICK_FIELDS)]
        for _ in range(n_host)
    ]
    times = {c: (draw(st.integers(0, 10**14)), draw(st.integers(0, 10**14))) for c in range(n_host)}
    hosts: list[HostStat] = []
    usages: list[CpuUsage] = []
    for _ in range(draw(st.integers(min_value=2, max_value=5))):
        hosts.append(host_stat(host_ticks))
        per_cpu = {c: CpuTimes(u, s) for c, (u, s) in times.items()}
        total = CpuTimes(sum(u for u, _ in times.values()), sum(s for _, s in times.values()))
        usages.append(CpuUsage(total, per_cpu if per_cpu_mode else None))
        host_ticks = [
            [t + draw(st.integers(min_value=0, max_value=10**4)) for t in ticks]
            for ticks in host_ticks
        ]
        times = {
            c: (u + draw(st.integers(0, 10**12)), s + draw(st.integers(0, 10**12)))
            for c, (u, s) in times.items()
        }
    return hosts, usages, cpus, quota


def elapsed_ticks(host: HostStat, physical: int) -> int:
    line = host.cpu(physical)
    assert line is not None
    return sum(line.ticks[:8])


@SETTINGS
@given(stat_sequences())
def test_stat_advance_never_goes_backwards_and_follows_the_host_clock(
    sequence: tuple[list[HostStat], list[CpuUsage], VisibleCpus, float | None],
) -> None:
    """What ``top`` computes between two reads (delta busy / delta total) stays in 0..100%
    per CPU, and within the quota overall."""
    hosts, usages, cpus, quota = sequence
    state = None
    previous: tuple[list[CpuLine], HostStat] | None = None
    for host, usage in zip(hosts, usages, strict=True):
        lines, state = stat.advance(host, usage, cpus, USER_HZ, quota, state)
        total, per_cpu = lines[0], lines[1:]
        assert len(per_cpu) == cpus.count
        for field in range(len(total.ticks)):
            assert total.ticks[field] == sum(line.ticks[field] for line in per_cpu)
        if previous is not None:
            old_lines, old_host = previous
            busy_growth = 0
            growths = [
                elapsed_ticks(host, physical) - elapsed_ticks(old_host, physical)
                for physical in cpus.physical
            ]
            for old, new, elapsed_growth in zip(old_lines[1:], per_cpu, growths, strict=True):
                grown = [b - a for a, b in zip(old.ticks, new.ticks, strict=True)]
                assert min(grown) >= 0, (old, new)
                assert sum(grown[:8]) == elapsed_growth  # each line keeps the host's pace
                busy_growth += grown[0] + grown[2]
            if quota is not None:
                wall = sum(growths) // cpus.count
                assert busy_growth <= quota * wall + cpus.count
        previous = (lines, host)


def render_line_by_line(host: HostMeminfo, memory: MemoryRecord, swap_enabled: bool) -> bytes:
    """The meminfo view spelt out: each host line rewritten, clamped or kept, then printed
    by ``format_line`` (the view prints through a template built once per host snapshot)."""
    values = meminfo.compute(host, memory, swap_enabled)
    total = values["MemTotal"]
    out = []
    for entry in host.entries:
        if entry.key in values:
            value = values[entry.key]
        elif entry.unit == "kB" and entry.key not in meminfo._HOST_COUNTS:
            value = min(max(0, entry.value), total)
        else:
            value = entry.value
        out.append(meminfo.format_line(entry.key, value, entry.unit))
    return "".join(out).encode()


#: Keys as odd as a host file can make them: long ones that fill the 16 columns, '%'
#: (the template's own character), parentheses, the names the view rewrites.
odd_keys = st.one_of(
    st.sampled_from(["MemTotal", "HardwareCorrupted", "HugePages_Total", "Active(anon)"]),
    st.from_regex(r"[A-Za-z%()_]{1,24}", fullmatch=True),
)


@st.composite
def odd_host_meminfos(draw: st.DrawFn) -> HostMeminfo:
    entries = draw(
        st.lists(
            st.tuples(odd_keys, st.integers(-5, 1 << 40), st.sampled_from(["kB", ""])),
            max_size=30,
        )
    )
    lines = [f"{key}: {value} {unit}".rstrip() for key, value, unit in entries]
    return parse_meminfo("\n".join(["MemTotal: 1000000 kB", *lines]) + "\n")


@SETTINGS
@given(
    host=st.one_of(host_meminfos(), odd_host_meminfos()),
    memory=memory_records,
    swap_enabled=st.booleans(),
)
def test_meminfo_render_is_the_line_by_line_view(
    host: HostMeminfo, memory: MemoryRecord, swap_enabled: bool
) -> None:
    assert meminfo.render(host, memory, swap_enabled) == render_line_by_line(
        host, memory, swap_enabled
    )
    # Rendered twice from one snapshot (the memoized template) it is still the same.
    assert meminfo.render(host, memory, swap_enabled) == render_line_by_line(
        host, memory, swap_enabled
    )


def meminfo_line_by_line(text: str) -> list[tuple[str, int, str]] | None:
    """``parse_meminfo`` spelt out (it splits a file in the kernel's format in one go once
    it has seen one): None where it must raise."""
    entries = []
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts:
            with contextlib.suppress(ValueError):
                entries.append((key.strip(), int(parts[0]), parts[1] if len(parts) > 1 else ""))
    return entries if any(key == "MemTotal" for key, _, _ in entries) else None


@st.composite
def kernel_meminfo_texts(draw: st.DrawFn) -> str:
    """The sample host's lines with other values and padding, as successive reads differ."""
    lines = []
    for line in SAMPLE_MEMINFO.splitlines():
        key, _, rest = line.partition(":")
        unit = " kB" if rest.endswith("kB") else ""
        value = draw(st.one_of(st.integers(0, 1 << 20), st.integers(0, 1 << 70)))
        lines.append(f"{key}:{' ' * draw(st.integers(0, 12))}{value}{unit}\n")
    return "".join(lines)


meminfo_texts = st.one_of(
    kernel_meminfo_texts(),
    kernel_meminfo_texts().map(lambda text: text.replace("kB", "MB", 1)),
    st.lists(
        st.tuples(
            odd_keys,
            st.sampled_from([":", ": ", ":\t", " : ", "", ":   "]),
            st.one_of(st.integers(-5, 1 << 40).map(str), st.sampled_from(["x", "", "1_0"])),
            st.sampled_from([" kB", "", " kB extra", "\u2028"]),
        ),
        max_size=8,
    ).map(
        lambda lines: "MemTotal:    1000 kB\n" + "".join(f"{k}{s}{v}{u}\n" for k, s, v, u in lines)
    ),
    st.text(alphabet=st.sampled_from("MemTotal: 01 kB\n\x1c"), max_size=40),
)


@SETTINGS
@given(texts=st.lists(meminfo_texts, min_size=1, max_size=6))
def test_parse_meminfo_is_the_line_by_line_parse(texts: list[str]) -> None:
    """Over a run of host files (as over the host's successive reads), each is parsed as
    its lines say, whatever the files before it were."""
    for text in texts:
        expected = meminfo_line_by_line(text)
        if expected is None:
            with pytest.raises(CgroupDataError):
                parse_meminfo(text)
        else:
            info = parse_meminfo(text)
            assert [tuple(entry) for entry in info.entries] == expected
            assert info.kb("MemTotal") == next(v for k, v, _ in expected if k == "MemTotal")


def flat_keyed_line_by_line(text: str) -> dict[str, int]:
    """``parse_flat_keyed`` spelt out (it splits a file in the kernel's exact format in one
    go): every line of two fields whose second is an int; others skipped."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            with contextlib.suppress(ValueError):
                values[parts[0]] = int(parts[1])
    return values


flat_keyed_texts = st.one_of(
    # The kernel's format, and one character away from it.
    st.lists(
        st.tuples(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.integers(-(1 << 70), 1 << 70))
    ).map(lambda pairs: "".join(f"{key} {value}\n" for key, value in pairs)),
    st.text(alphabet=st.sampled_from("ab1- \t\n\r\x0b+_9"), max_size=60),
    # A value past int()'s digit limit: the line is skipped, not an exception.
    st.just("a 1\nb " + "9" * 5000 + "\n"),
)


@SETTINGS
@given(text=flat_keyed_texts)
def test_parse_flat_keyed_is_the_line_by_line_parse(text: str) -> None:
    """(Picking a few keys is KeyPicker's, tested below on the same texts.)"""
    expected = flat_keyed_line_by_line(text)
    try:
        assert parse_flat_keyed(text, "memory.stat") == expected
    except CgroupDataError:
        assert not flat_keyed_line_by_line(text)
        assert text.strip()


def usage_all_line_by_line(text: str) -> dict[int, tuple[int, int]] | None:
    """``parse_usage_all`` spelt out (it splits a file in the kernel's exact format in one
    go): None where it must raise."""
    lines = text.splitlines()
    if not lines or lines[0].split()[:1] != ["cpu"]:
        return None
    rows = {}
    for line in lines[1:]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not all(re.fullmatch(r"-?[0-9]+", part) for part in parts):
            return None
        rows[int(parts[0])] = (int(parts[1]), int(parts[2]))
    return rows


usage_all_texts = st.one_of(
    st.lists(st.tuples(*[st.integers(0, 1 << 64)] * 3)).map(
        lambda rows: "cpu user system\n" + "".join(f"{c} {u} {s}\n" for c, u, s in rows)
    ),
    st.text(alphabet=st.sampled_from("cpu sertym01-9\n \t"), max_size=60).map(
        lambda tail: "cpu user system\n" + tail
    ),
)


@SETTINGS
@given(text=usage_all_texts)
def test_parse_usage_all_is_the_line_by_line_parse(text: str) -> None:
    expected = usage_all_line_by_line(text)
    if expected is None:
        with pytest.raises(CgroupDataError):
            parse_usage_all(text, "cpuacct.usage_all")
    else:
        assert parse_usage_all(text, "cpuacct.usage_all") == expected


@SETTINGS
@given(
    texts=st.lists(
        st.one_of(
            flat_keyed_texts,
            # the same key column as another draw with other values: the memo's fast path
            st.lists(st.integers(-(1 << 70), 1 << 70), min_size=3, max_size=3).map(
                lambda values: "".join(f"{k} {v}\n" for k, v in zip("abc", values, strict=True))
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    keys=st.lists(st.sampled_from("abc_"), min_size=1, max_size=4),
)
def test_key_picker_is_the_line_by_line_parse(texts: list[str], keys: list[str]) -> None:
    """One picker over a run of files (as over a cgroup's successive memory.stat reads):
    each answer is that file's line-by-line parse, whatever the files before it were."""
    picker = KeyPicker(keys)
    for text in texts:
        expected = flat_keyed_line_by_line(text)
        try:
            assert picker.pick(text, "memory.stat") == [expected.get(key) for key in keys]
        except CgroupDataError:
            assert not expected
            assert text.strip()


_segment = st.sampled_from(["ct", "init.scope", "system.slice", "a.service", "pod", "x"])
_cgroup_path = st.lists(_segment, max_size=4).map(lambda parts: "/" + "/".join(parts))


@given(
    caller=st.dictionaries(st.sampled_from(["memory", "cpu", "blkio"]), _cgroup_path),
    init=st.dictionaries(st.sampled_from(["memory", "cpu", "blkio"]), _cgroup_path),
    caller_unified=st.none() | _cgroup_path,
    init_unified=st.none() | _cgroup_path,
)
def test_the_container_of_a_caller_encloses_it_and_is_never_the_root(
    caller: dict[str, str],
    init: dict[str, str],
    caller_unified: str | None,
    init_unified: str | None,
) -> None:
    """A caller's container cgroup is its own, or its init's when that strictly encloses
    it; never the root (the host), never a cgroup that does not hold the caller."""
    mine = CgroupMembership(5, dict(caller), caller_unified)
    theirs = CgroupMembership(1, dict(init), init_unified)
    lifted = within_init(mine, theirs)
    assert lifted.pid == 5
    assert set(lifted.v1) == set(caller)
    pairs = [(caller[c], lifted.v1[c], init.get(c)) for c in caller]
    pairs.append((caller_unified, lifted.unified, init_unified))
    for own, shown, of_init in pairs:
        if shown == own:
            continue
        assert shown == of_init
        assert shown is not None
        assert own is not None
        assert shown != "/"
        assert own.startswith(shown + "/")


@given(
    start=st.floats(0, 1e6),
    steps=st.lists(
        st.tuples(st.floats(0, 100), st.floats(0, 1)), min_size=1, max_size=20
    ),  # (seconds passed, share of the CPUs kept busy)
    cpus=st.integers(1, 256),
)
def test_uptime_idle_never_goes_back_for_a_container_on_its_cpus(
    start: float, steps: list[tuple[float, float]], cpus: int
) -> None:
    """A cgroup limited to the CPUs it is shown uses at most that many CPU seconds a
    second: its idle, summed over them as the kernel's, never decreases."""
    now, busy = start, 0.0
    last_idle = uptime.compute(now, start, busy, cpus)[1]
    for elapsed, share in steps:
        now += elapsed
        busy += elapsed * cpus * share
        idle = uptime.compute(now, start, busy, cpus)[1]
        assert idle >= last_idle - 1e-6 * max(1.0, idle)
        last_idle = idle


@given(
    host_uptime=st.floats(0, 1e8),
    idle=st.floats(0, 1e9),
    ages=st.lists(st.floats(0, 0.1), min_size=1, max_size=10),
    recomputed_after=st.floats(0, 0.1),
)
def test_a_cached_uptime_moves_on_and_never_passes_the_next_computed_one(
    host_uptime: float, idle: float, ages: list[float], recomputed_after: float
) -> None:
    """Read within the TTL, a cached /proc/uptime moves on with the clock; the one computed
    afresh after it (at least as late as the last read) is never less than what was shown."""
    cached = b"%.2f %.2f\n" % (host_uptime, idle)  # as render prints them
    shown = [float(cached.split()[0])]
    for age in sorted(ages):
        moved = uptime.advance(cached, age)
        assert moved.split()[1] == cached.split()[1]  # the idle waits
        shown.append(float(moved.split()[0]))
    assert shown == sorted(shown)
    fresh = uptime.render(host_uptime + max(sorted(ages)[-1], recomputed_after), 0.0, 0.0)
    assert float(fresh.split()[0]) >= shown[-1]
