"""What the per-CPU views cost on a big host: /proc/stat and /proc/cpuinfo for 8-256 CPUs.

Not a test, and needs no root: it builds a host /proc/stat and /proc/cpuinfo with N CPUs
(the cpuinfo blocks are copies of this machine's first one) and times, in-process, what
the daemon does with them on a cache miss: parse the host stat and advance one cgroup's
counters over all N CPUs (a container without a cpuset) and over 4 (a cpuset of 4),
render stat, read a v1 cgroup's ``cpuacct.usage_all`` (a row per host CPU), and render
cpuinfo for a 4-CPU container and for one that sees all N. Run it from a checkout::

    python benchmarks/big_host.py [--cpus 8,64,128,256]

The costs should grow linearly with N: a lookup that scanned the host's CPU list for
every visible CPU once made the stat miss quadratic (3.5 ms at 128 CPUs, 12 ms at 256).
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procfs_view.cgroup.reader import CgroupReader
from procfs_view.cgroup.records import CpuQuota, CpuTimes, CpuUsage
from procfs_view.host import parse_stat
from procfs_view.views import cpuinfo, stat
from procfs_view.views.cpus import visible_cpus


def host_stat_text(cpus: int) -> str:
    lines = ["cpu  " + " ".join(str(1_000_000 + field) for field in range(10))]
    lines += [
        f"cpu{cpu} " + " ".join(str(10_000 + cpu * 7 + field) for field in range(10))
        for cpu in range(cpus)
    ]
    lines += ["intr 1 2 3", "ctxt 5", "btime 7", "processes 9", "procs_running 1"]
    return "\n".join(lines) + "\n"


def host_cpuinfo_text(cpus: int) -> str:
    block = Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
    rest = [line for line in block if not line.startswith("processor")]
    return "".join("\n".join([f"processor\t: {cpu}", *rest]) + "\n\n" for cpu in range(cpus))


class UsageFile:
    """A cgroup directory holding only ``cpuacct.usage_all``, as the reader reads it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def read_optional(self, name: str) -> str:
        return self.text


def microseconds(action: Callable[[], object], number: int = 100) -> float:
    return min(timeit.repeat(action, number=number, repeat=5)) / number * 1e6


COLUMNS = (
    "stat, all CPUs: parse + advance µs",
    "stat, all CPUs: render µs",
    "stat, 4 CPUs: parse + advance µs",
    "cgroup cpuacct.usage_all µs",
    "cpuinfo, 4 CPUs µs",
    "cpuinfo, all µs",
)


def measure(count: int) -> tuple[float, ...]:
    """µs for each of ``COLUMNS``: a container that sees every CPU, and one with a cpuset
    of 4 (the host stat is parsed on every read: it is never cached), and the v1 cgroup's
    per-CPU usage file, which has a row per host CPU whatever the container sees."""
    stat_text, cpuinfo_text = host_stat_text(count), host_cpuinfo_text(count)
    every = visible_cpus(range(count), range(count), CpuQuota(None), cpu_view=False)
    four = visible_cpus(range(4), range(count), CpuQuota(None), cpu_view=False)
    usage = CpuUsage(
        CpuTimes(10**12, 10**11), {cpu: CpuTimes(10**10, 10**9) for cpu in range(count)}
    )
    usage_text = "cpu user system\n" + "".join(
        f"{cpu} {10**10 + cpu} {10**9 + cpu}\n" for cpu in range(count)
    )
    host = parse_stat(stat_text)
    lines, state = stat.advance(host, usage, every, 100, None, None)
    _, state_four = stat.advance(host, usage, four, 100, None, None)
    return (
        microseconds(lambda: stat.advance(parse_stat(stat_text), usage, every, 100, None, state)),
        microseconds(lambda: stat.render_lines(host, lines)),
        microseconds(
            lambda: stat.advance(parse_stat(stat_text), usage, four, 100, None, state_four)
        ),
        microseconds(lambda: CgroupReader._cpuacct_usage(UsageFile(usage_text))),
        microseconds(lambda: cpuinfo.render(cpuinfo_text, four)),
        microseconds(lambda: cpuinfo.render(cpuinfo_text, every)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", default="8,64,128,256")
    args = parser.parse_args(argv)
    print("| host CPUs | " + " | ".join(COLUMNS) + " |")
    print("| ---: |" + " ---: |" * len(COLUMNS))
    for count in (int(text) for text in args.cpus.split(",")):
        figures = " | ".join(f"{value:.0f}" for value in measure(count))
        print(f"| {count} | {figures} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
