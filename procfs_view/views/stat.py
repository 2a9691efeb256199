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
"""

from __future__ import annotations

from procfs_view.cgroup.records import CpuUsage
from procfs_view.host import CpuLine, HostStat
from procfs_view.views.cpus import VisibleCpus

NS_PER_SECOND = 1_000_000_000
#: user nice system idle iowait irq softirq steal: the fields that add up to elapsed time
#: (guest and guest_nice are already included in user and nice).
_ELAPSED_FIELDS = 8


def ns_to_ticks(nanoseconds: int, user_hz: int) -> int:
    return max(0, nanoseconds) * user_hz // NS_PER_SECOND


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` integers differing by at most one (remainder to the first)."""
    base, remainder = divmod(total, parts)
    return [base + (1 if index < remainder else 0) for index in range(parts)]


def _elapsed(line: CpuLine | None, fallback: int) -> int:
    return fallback if line is None else sum(line.ticks[:_ELAPSED_FIELDS])


def per_cpu_busy(usage: CpuUsage, cpus: VisibleCpus, user_hz: int) -> list[tuple[int, int]]:
    """(user, system) ticks for each visible CPU, in display order."""
    if usage.per_cpu is not None and not cpus.renumbered:
        result = []
        for physical in cpus.physical:
            times = usage.per_cpu.get(physical)
            if times is None:
                result.append((0, 0))
            else:
                result.append(
                    (ns_to_ticks(times.user, user_hz), ns_to_ticks(times.system, user_hz))
                )
        return result
    users = split_evenly(ns_to_ticks(usage.total.user, user_hz), cpus.count)
    systems = split_evenly(ns_to_ticks(usage.total.system, user_hz), cpus.count)
    return list(zip(users, systems, strict=True))


def compute(host: HostStat, usage: CpuUsage, cpus: VisibleCpus, user_hz: int) -> list[CpuLine]:
    """The ``cpu`` line followed by one line per visible CPU."""
    width = len(host.total.ticks)
    host_lines = [host.cpu(physical) for physical in cpus.physical]
    known = [_elapsed(line, 0) for line in host_lines if line is not None]
    typical = max(known) if known else _elapsed(host.total, 0) // max(1, len(host.per_cpu))
    lines: list[CpuLine] = []
    for index, ((user, system), host_line) in enumerate(
        zip(per_cpu_busy(usage, cpus, user_hz), host_lines, strict=True)
    ):
        idle = max(0, _elapsed(host_line, typical) - user - system)
        ticks = [0] * width
        ticks[0], ticks[2], ticks[3] = user, system, idle
        lines.append(CpuLine(f"cpu{cpus.shown_number(index)}", tuple(ticks)))
    total = tuple(sum(line.ticks[i] for line in lines) for i in range(width))
    return [CpuLine("cpu", total), *lines]


def _format(line: CpuLine) -> str:
    # The kernel prints two spaces after the aggregate "cpu" label.
    label = "cpu " if line.name == "cpu" else line.name
    return f"{label} {' '.join(str(t) for t in line.ticks)}\n"


def render(host: HostStat, usage: CpuUsage, cpus: VisibleCpus, user_hz: int) -> bytes:
    lines = [_format(line) for line in compute(host, usage, cpus, user_hz)]
    lines.extend(f"{line}\n" for line in host.other_lines)
    return "".join(lines).encode()
