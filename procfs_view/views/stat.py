"""/proc/stat with per-CPU lines computed from the cgroup's CPU usage, on v1 *and* v2.

LXCFS virtualizes only v1 (it looks for a cpuacct controller cgroup2 lacks, lxcfs#593/#628)
and serves host per-CPU times on v2. Here v1 uses ``cpuacct.usage_all`` per physical CPU;
v2's ``cpu.stat`` has totals only, which are spread evenly over the visible CPUs (an even
split keeps every per-CPU counter non-decreasing while the total grows). With the CPU view,
usage is likewise spread over the N renumbered CPUs.

Per CPU, idle is the host CPU's elapsed ticks minus the cgroup's busy ticks, so every line
sums to the host's elapsed time and ``top`` computes the cgroup's share of it. Fields the
cgroup cannot tell (nice, iowait, irq, softirq, steal, guest) are 0. Non-CPU lines (intr,
ctxt, btime, processes, procs_*, softirq) are the host's.

Across reads (``advance``), counters only move forward: each read adds the growth of the
cgroup's usage and of the host's elapsed time since the previous read, capped so the busy
share never exceeds the CFS quota nor a CPU's elapsed time, and a change of the visible
CPUs continues the lines it keeps. LXCFS's CPU view lets idle run backwards, which makes
``top`` print negative or >100% figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from procfs_view.cgroup.records import CpuTimes, CpuUsage
from procfs_view.host import CpuLine, HostStat
from procfs_view.views.cpus import VisibleCpus

NS_PER_SECOND = 1_000_000_000
#: user nice system idle iowait irq softirq steal: the fields that add up to elapsed time
#: (guest and guest_nice are already included in user and nice).
_ELAPSED_FIELDS = 8
USER, SYSTEM, IDLE = 0, 2, 3


def ns_to_ticks(nanoseconds: int, user_hz: int) -> int:
    return max(0, nanoseconds) * user_hz // NS_PER_SECOND


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` integers differing by at most one (remainder to the first)."""
    base, remainder = divmod(total, parts)
    return [base + (1 if index < remainder else 0) for index in range(parts)]


def _elapsed(line: CpuLine | None, fallback: int) -> int:
    return fallback if line is None else sum(line.ticks[:_ELAPSED_FIELDS])


def _spread(usage: CpuUsage, cpus: VisibleCpus) -> bool:
    """Whether the usage is spread evenly over the visible CPUs (v2's totals, or usage
    folded onto renumbered CPUs) rather than taken CPU by CPU."""
    return usage.per_cpu is None or cpus.renumbered


def per_cpu_busy(usage: CpuUsage, cpus: VisibleCpus, user_hz: int) -> list[tuple[int, int]]:
    """(user, system) ticks for each visible CPU, in display order."""
    if usage.per_cpu is not None and not cpus.renumbered:  # not _spread(usage, cpus)
        result = []
        per_cpu, none = usage.per_cpu, CpuTimes(0, 0)
        for physical in cpus.physical:  # ns_to_ticks inlined: once per visible CPU per read
            user, system = per_cpu.get(physical, none)
            result.append(
                (
                    (user if user > 0 else 0) * user_hz // NS_PER_SECOND,
                    (system if system > 0 else 0) * user_hz // NS_PER_SECOND,
                )
            )
        return result
    users = split_evenly(ns_to_ticks(usage.total.user, user_hz), cpus.count)
    systems = split_evenly(ns_to_ticks(usage.total.system, user_hz), cpus.count)
    return list(zip(users, systems, strict=True))


def host_elapsed(host: HostStat, cpus: VisibleCpus) -> list[int]:
    """Elapsed ticks of the host CPU behind each visible CPU. The views first leave out a
    CPU missing from the host file (``present``); should none of them be there, each
    counts as the host's average CPU."""
    sums = host.counter_sums(cpus.physical, _ELAPSED_FIELDS)
    known = [value for value in sums if value is not None]
    if len(known) == len(sums):
        return known
    typical = _elapsed(host.total, 0) // max(1, host.cpu_count)
    return [typical if value is None else value for value in sums]


def _lines(
    shown: Sequence[int],
    per_cpu: Sequence[tuple[int, ...]],
    total: tuple[int, ...] | None = None,
) -> list[CpuLine]:
    """The ``cpu`` line (``total``, else the field-wise sum of the CPU lines) followed by
    a line per shown CPU number."""
    if total is None:
        total = tuple(map(sum, zip(*per_cpu, strict=True)))
    return [
        CpuLine("cpu", total),
        *(CpuLine(f"cpu{n}", ticks) for n, ticks in zip(shown, per_cpu, strict=True)),
    ]


def compute(host: HostStat, usage: CpuUsage, cpus: VisibleCpus, user_hz: int) -> list[CpuLine]:
    """The ``cpu`` line followed by one line per visible CPU, from this instant alone."""
    cpus = present(host, cpus)
    per_cpu = _stateless_ticks(
        per_cpu_busy(usage, cpus, user_hz), host_elapsed(host, cpus), len(host.total.ticks)
    )
    return _lines([cpus.shown_number(i) for i in range(cpus.count)], per_cpu)


def _stateless_ticks(
    busy: Sequence[tuple[int, int]], elapsed: Sequence[int], width: int
) -> list[tuple[int, ...]]:
    """Each visible CPU's counters from this instant alone: the cgroup's user and system
    ticks, and idle the rest of the host CPU's elapsed time."""
    per_cpu: list[tuple[int, ...]] = []
    for (user, system), cpu_elapsed in zip(busy, elapsed, strict=True):
        ticks = [0] * width
        ticks[USER], ticks[SYSTEM] = user, system
        ticks[IDLE] = max(0, cpu_elapsed - user - system)
        per_cpu.append(tuple(ticks))
    return per_cpu


def present(host: HostStat, cpus: VisibleCpus) -> VisibleCpus:
    """The visible CPUs that have a line in the host file (all of them, unless one went
    offline since the online list was read; and all when none has)."""
    known = set(host.cpu_numbers)  # no line converted: hosts have hundreds
    kept = tuple(number for number in cpus.physical if number in known)
    if not kept or len(kept) == cpus.count:
        return cpus
    return VisibleCpus(kept, cpus.renumbered)


def restricted(host: HostStat, cpus: VisibleCpus) -> bool:
    """Whether a caller shown ``cpus`` would see other CPU lines than the host file's:
    fewer CPUs (a cpuset, the CPU view's quota), or renumbered ones."""
    cpus = present(host, cpus)
    visible, every = set(cpus.physical), set(host.cpu_numbers)
    # None of them in the host file: nothing to show but its lines. All of them: the
    # caller sees the whole host, whatever the numbering (the CPU view renumbers around
    # an offline CPU), and gets the host's file.
    return bool(visible & every) and visible != every


def host_cpu_lines(host: HostStat, cpus: VisibleCpus) -> list[CpuLine]:
    """For a caller whose CPU time is the host's (the root cpuacct cgroup) but that is
    shown only some CPUs: those CPUs' host lines under their shown numbers, and an
    aggregate that is their sum. LXCFS shows only those CPUs too; the whole host file had
    cpu0 and cpu1 where nproc said 1."""
    cpus = present(host, cpus)
    shown, per_cpu = [], []
    for index, physical in enumerate(cpus.physical):
        line = host.cpu(physical)
        if line is not None:  # all of them, unless none is in the host file
            shown.append(cpus.shown_number(index))
            per_cpu.append(line.ticks)
    return _lines(shown, per_cpu) if per_cpu else [host.total]


@dataclass(frozen=True)
class StatState:
    """What one cgroup was last shown, to continue from on its next read: the per-CPU
    lines (by shown number), the physical CPU behind each, the aggregate ``cpu`` line, the
    usage and host time they were computed at, and the last lines of CPUs shown before but
    not now (``hidden``).

    ``identity`` is the usage cgroup directory's inode: a cgroup made again at the same
    path (an LXC container name reused) starts from its own usage, never from the ticks
    its predecessor, maybe another tenant's, was shown."""

    shown: tuple[int, ...]
    physical: tuple[int, ...]
    busy: tuple[tuple[int, int], ...]
    elapsed: tuple[int, ...]
    per_cpu: tuple[tuple[int, ...], ...]
    total: tuple[int, ...]
    hidden: tuple[tuple[int, tuple[int, ...]], ...] = ()
    identity: int = 0


def advance(
    host: HostStat,
    usage: CpuUsage,
    cpus: VisibleCpus,
    user_hz: int,
    quota_cpus: float | None,
    previous: StatState | None,
    identity: int = 0,
) -> tuple[list[CpuLine], StatState]:
    """The lines for this read and the state for the next one.

    The first read is ``compute``'s, and so is a read whose usage cgroup is not the one
    ``previous`` was computed for (another ``identity``). Later reads add, per CPU, the
    growth of the cgroup's user/system ticks, scaled down so that the cgroup's total busy
    growth stays within ``quota_cpus`` times the elapsed wall time and no CPU is busier
    than its own elapsed time; idle takes the rest, and the aggregate line adds what the
    CPU lines added. Every field is thus non-decreasing and no line runs ahead of the
    host, also across a change of the visible CPUs (``_reshown``).
    """
    # A CPU that went offline is still in the online list for up to the cache TTL, but no
    # longer in the host file: it is left out of this read (it was charged the busiest
    # CPU's elapsed time), and comes back as any CPU shown again does.
    cpus = present(host, cpus)
    busy = per_cpu_busy(usage, cpus, user_hz)
    spread = _spread(usage, cpus)
    elapsed = host_elapsed(host, cpus)
    shown = tuple(cpus.shown_number(i) for i in range(cpus.count))
    width = len(host.total.ticks)
    if previous is not None and previous.identity != identity:
        previous = None
    if previous is None or len(previous.total) != width:
        lines = _lines(shown, _stateless_ticks(busy, elapsed, width))
        first = tuple(line.ticks for line in lines[1:])
        return lines, StatState(
            shown,
            cpus.physical,
            tuple(busy),
            tuple(elapsed),
            first,
            lines[0].ticks,
            identity=identity,
        )
    # With the CPU view a move to other physical CPUs keeps the shown numbers (cpuset 1 ->
    # 0 shows cpu0 either way), but growth measured against another CPU's elapsed time is
    # no growth: idle jumped by the difference between the two CPUs' elapsed times.
    # _reshown measures the interval on the CPUs it ran on.
    if previous.shown != shown or previous.physical != cpus.physical:
        return _reshown(
            previous, host, cpus.physical, shown, busy, elapsed, width, quota_cpus, spread
        )
    grown_elapsed = [
        max(0, now - then) for now, then in zip(elapsed, previous.elapsed, strict=True)
    ]
    grown_busy = [
        (max(0, user - old_user), max(0, system - old_system))
        for (user, system), (old_user, old_system) in zip(busy, previous.busy, strict=True)
    ]
    per_cpu, total = _grow(previous.per_cpu, grown_busy, grown_elapsed, quota_cpus, previous.total)
    state = StatState(
        shown,
        previous.physical,
        tuple(busy),
        tuple(elapsed),
        per_cpu,
        total,
        previous.hidden,
        previous.identity,
    )
    return _lines(state.shown, state.per_cpu, state.total), state


def _grow(
    lines: Sequence[tuple[int, ...]],
    grown_busy: Sequence[tuple[int, int]],
    grown_elapsed: Sequence[int],
    quota_cpus: float | None,
    total: tuple[int, ...],
) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """``lines`` advanced by the cgroup's (user, system) growth on each CPU and that CPU's
    elapsed growth (idle takes the rest), the busy growth scaled down to the quota and to
    each CPU's elapsed growth; and ``total`` advanced by what they were."""
    wall = sum(grown_elapsed) // max(1, len(grown_elapsed))
    allowed = sum(grown_elapsed)
    if quota_cpus is not None:
        allowed = min(allowed, int(quota_cpus * wall))
    wanted = sum(user + system for user, system in grown_busy)
    per_cpu: list[tuple[int, ...]] = []
    over_quota, divisor = wanted > allowed, max(1, wanted)
    added_user = added_system = added_idle = 0
    # The scaling inlined (no calls, comparisons for max): this loop runs once per visible
    # CPU on every read, hundreds of times on big hosts.
    for ticks, (user, system), room in zip(lines, grown_busy, grown_elapsed, strict=True):
        if over_quota:  # all CPUs' growth scaled by allowed / wanted
            user, system = user * allowed // divisor, system * allowed // divisor
        busy_growth = user + system
        if busy_growth > room:  # no CPU busier than its own elapsed time
            user, system = user * room // busy_growth, system * room // busy_growth
        idle_growth = room - user - system
        if idle_growth < 0:
            idle_growth = 0
        updated = list(ticks)
        updated[USER] += user
        updated[SYSTEM] += system
        updated[IDLE] += idle_growth
        per_cpu.append(tuple(updated))
        added_user += user
        added_system += system
        added_idle += idle_growth
    grown_total = list(total)
    grown_total[USER] += added_user
    grown_total[SYSTEM] += added_system
    grown_total[IDLE] += added_idle
    return tuple(per_cpu), tuple(grown_total)


def _kept_growth(
    previous: StatState,
    host: HostStat,
    shown: tuple[int, ...],
    busy: Sequence[tuple[int, int]],
    spread: bool,
) -> dict[int, tuple[tuple[int, int], int]]:
    """For each shown number shown at the previous read too, the cgroup's (user, system)
    growth there and the elapsed growth of the host CPU it was then, since that read: the
    interval ran on the CPUs shown before. A CPU missing from the host file now (just
    unplugged) has no known growth and is left out.

    Spread usage (v2, CPU view) is the cgroup's total growth, of which each CPU shown
    before gets its share; CPU by CPU (v1) it is that CPU's growth."""
    index_of = {number: index for index, number in enumerate(previous.shown)}
    kept = [(number, index_of[number]) for number in shown if number in index_of]
    if not kept:
        return {}
    now_elapsed = host.counter_sums([previous.physical[j] for _, j in kept], _ELAPSED_FIELDS)
    busy_of = dict(zip(shown, busy, strict=True))
    if spread:
        count = len(previous.shown)
        users = split_evenly(
            max(0, sum(u for u, _ in busy) - sum(u for u, _ in previous.busy)), count
        )
        systems = split_evenly(
            max(0, sum(s for _, s in busy) - sum(s for _, s in previous.busy)), count
        )
    growth: dict[int, tuple[tuple[int, int], int]] = {}
    for (number, j), now in zip(kept, now_elapsed, strict=True):
        if now is None:
            continue
        if spread:
            grown_busy = users[j], systems[j]
        else:
            (user, system), (old_user, old_system) = busy_of[number], previous.busy[j]
            grown_busy = max(0, user - old_user), max(0, system - old_system)
        growth[number] = grown_busy, max(0, now - previous.elapsed[j])
    return growth


def _reshown(
    previous: StatState,
    host: HostStat,
    physical: tuple[int, ...],
    shown: tuple[int, ...],
    busy: list[tuple[int, int]],
    elapsed: list[int],
    width: int,
    quota_cpus: float | None,
    spread: bool,
) -> tuple[list[CpuLine], StatState]:
    """The read after the visible CPUs changed (a new cpuset, or a new quota with the CPU
    view: ``docker update``, an in-place pod resize), or the physical CPUs behind the
    shown numbers did (the CPU view renumbers them). Starting over from ``compute`` made
    counters jump back (a widened cpuset took cpu0's user from 550 to 300 ticks), and
    ``top`` printed negative or >100% figures. Instead a CPU still shown advances its line
    by its growth since the previous read (``_kept_growth``: the refresh across the change
    showed 0 % busy when it added none), one shown again resumes its last line, a new one
    starts from zero (as a CPU brought online on a host), and the aggregate adds what the
    kept lines grew by, so it is never below the sum of the CPU lines. Growth is measured
    from this read on. Like the kernel's (which sums every possible CPU), the aggregate
    never drops when CPUs go away."""
    last = dict(previous.hidden)
    last.update(zip(previous.shown, previous.per_cpu, strict=True))
    growth = _kept_growth(previous, host, shown, busy, spread)
    grown, total = _grow(
        [last[number] for number in growth],
        [grown_busy for grown_busy, _ in growth.values()],
        [grown_elapsed for _, grown_elapsed in growth.values()],
        quota_cpus,
        previous.total,
    )
    last.update(zip(growth, grown, strict=True))
    # A CPU never shown before starts from zero, as a CPU brought online does on a host:
    # its line from this instant alone (idle since boot, and on v2 or with the CPU view a
    # share of usage the aggregate already holds) would make the aggregate jump by a
    # whole CPU's history, or count the container's past CPU time twice.
    zero = (0,) * width
    per_cpu = tuple(last.get(number, zero) for number in shown)
    visible = set(shown)
    hidden = tuple(sorted((n, ticks) for n, ticks in last.items() if n not in visible))
    state = StatState(
        shown,
        physical,
        tuple(busy),
        tuple(elapsed),
        per_cpu,
        total,
        hidden,
        previous.identity,
    )
    return _lines(state.shown, state.per_cpu, state.total), state


def render_lines(host: HostStat, lines: list[CpuLine]) -> bytes:
    """The CPU lines, then the host's other lines verbatim. Each line goes through one
    ``%`` template per counter count: a ``str`` per counter and a join took 392 µs of a
    256-CPU host's read, this 247."""
    templates: dict[int, str] = {}
    text = []
    for line in lines:
        ticks = line.ticks
        template = templates.get(len(ticks))
        if template is None:
            template = templates[len(ticks)] = "%s " + " ".join(["%d"] * len(ticks)) + "\n"
        # The kernel prints two spaces after the aggregate "cpu" label.
        text.append(template % ("cpu " if line.name == "cpu" else line.name, *ticks))
    text.extend(f"{line}\n" for line in host.other_lines)
    return "".join(text).encode()


def render(host: HostStat, usage: CpuUsage, cpus: VisibleCpus, user_hz: int) -> bytes:
    """Stateless rendering (``procfs-view show``, first reads)."""
    return render_lines(host, compute(host, usage, cpus, user_hz))
