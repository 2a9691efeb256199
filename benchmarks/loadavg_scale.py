#!/usr/bin/env python3
"""How long one loadavg sampling round takes with many containers (not a test).

Creates N cgroups (default 1000) named procfs-view-bench-<random>-<i> in the hierarchy
that holds the ``cpu`` controller, starts P sleeping processes in each (default 3), runs
the sampler's counting pass over all of them several times, and prints the median round
time as a share of the 5 s sampling interval (target: under 10% on one core). Everything
it created is removed at the end, also on Ctrl-C.

    sudo .venv/bin/python benchmarks/loadavg_scale.py [--cgroups 1000] [--procs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchcgroups import bench_cgroups

from procfs_view.loadavg import LOAD_FREQ, LoadTracker


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cgroups", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=3, help="processes per cgroup")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("loadavg_scale: needs root to create cgroups", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with bench_cgroups("cpu", args.cgroups, args.procs) as directories:
        setup = time.perf_counter() - started
        tracker = LoadTracker()
        for directory in directories:
            tracker.sample(directory)
        rounds = []
        for _ in range(args.rounds):
            cpu_before = time.process_time()
            counts = tracker.count_all(tracker.tracked())
            tracker.fold(counts)
            rounds.append((tracker.last_round_seconds, time.process_time() - cpu_before))
    threads = sum(c.total for c in counts.values() if c is not None)
    wall = statistics.median(r[0] for r in rounds)
    cpu = statistics.median(r[1] for r in rounds)
    print(
        f"loadavg sampling round: {args.cgroups} cgroups, {threads} threads "
        f"(kernel {os.uname().release}, {os.cpu_count()} CPUs; setup {setup:.1f} s)"
    )
    share = f"share of {LOAD_FREQ:.0f} s"
    print(f"| cgroups | threads | round wall (median) | round CPU | {share} |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.cgroups} | {threads} | {wall * 1000:.1f} ms | {cpu * 1000:.1f} ms "
        f"| {wall / LOAD_FREQ * 100:.2f}% |"
    )
    return 0 if wall < LOAD_FREQ / 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
