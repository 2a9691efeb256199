"""Latency as the number of containers grows: 1, 100 and 1000 cgroups read round-robin.

Not a test: run it as root from a checkout::

    python benchmarks/scale.py [--sizes 1,100,1000] [--reads 3000] [--profile]

For each size N it makes N memory cgroups (limits 64..163 MiB, so every answer can be
checked) with a sleeping process in each, mounts procfs-view and, when installed, LXCFS,
and has one reader hop from cgroup to cgroup (it moves itself; the move is not timed),
timing open+read+close of proc/meminfo. Every answer's MemTotal is checked against the
cgroup's limit, so a cache that crossed containers would be reported. It prints median
latency per N, the ratio to N=1, the ratio to LXCFS, and procfs-view's RSS and CPU time;
then the daemon's CPU use over 5 idle seconds. ``--profile`` samples procfs-view with
py-spy during the largest size's reads and prints where its time goes (profiling.py).
Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import profiling
from benchcgroups import bench_cgroups
from read_latency import mounted

MIB = 1024 * 1024

# Hops between cgroups and times each read; prints JSON {median_ns, wrong}.
READER = """
import json, os, statistics, sys, time
root, reads = sys.argv[1], int(sys.argv[4])
procs_files, limits = json.loads(sys.argv[2]), json.loads(sys.argv[3])
path = os.path.join(root, "proc/meminfo")
me = str(os.getpid()).encode()
samples, wrong = [], 0
for i in range(reads + len(procs_files)):
    index = i % len(procs_files)
    fd = os.open(procs_files[index], os.O_WRONLY); os.write(fd, me); os.close(fd)
    t = time.perf_counter_ns()
    fd = os.open(path, os.O_RDONLY)
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    elapsed = time.perf_counter_ns() - t
    if i >= len(procs_files) or len(procs_files) == 1:
        samples.append(elapsed)
    total_kb = int(data.split(b"\\n", 1)[0].split()[1])
    if total_kb != limits[index] // 1024:
        wrong += 1
print(json.dumps({"median_ns": statistics.median(samples), "wrong": wrong}))
"""


def process_figures(pid: int) -> tuple[int, float]:
    """(RSS in KiB, user+system CPU seconds) of ``pid``."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def limit_of(index: int) -> int:
    return (64 + index % 100) * MIB


def set_limit(directory: Path, index: int) -> None:
    name = (
        "memory.limit_in_bytes" if (directory / "memory.limit_in_bytes").exists() else "memory.max"
    )
    (directory / name).write_text(str(limit_of(index)))


def read_round_robin(
    root: Path, procs: list[str], limits: list[int], reads: int
) -> dict[str, float]:
    """Run the hopping reader (a child, so the benchmark itself never changes cgroup)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            READER,
            str(root),
            json.dumps(procs),
            json.dumps(limits),
            str(reads),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="py-spy the largest size")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("scale: needs root (cgroups, mounts)", file=sys.stderr)
        return 2
    if args.profile and (problem := profiling.available()) is not None:
        print(problem, file=sys.stderr)
        return 2
    sizes = [int(size) for size in args.sizes.split(",")]
    lxcfs = shutil.which("lxcfs")
    rows = []
    wrong_total = 0
    profiled: tuple[int, list[tuple[str, float]], float] | None = None
    with tempfile.TemporaryDirectory(prefix="procfs-view-scale-") as tmp:
        base = Path(tmp)
        pidfile = base / "pv.pid"
        ours_argv = [sys.executable, "-m", "procfs_view", "--pidfile", str(pidfile)]
        with mounted([*ours_argv, str(base / "pv")], base / "pv", "procfs-view", base / "pv.log"):
            pid = int(pidfile.read_text().split()[0])
            lxcfs_cm = (
                mounted(
                    [lxcfs, "-f", "-p", str(base / "lxcfs.pid"), str(base / "lx")],
                    base / "lx",
                    "lxcfs",
                    base / "lx.log",
                )
                if lxcfs
                else contextlib.nullcontext(None)
            )
            with lxcfs_cm:
                for size in sizes:
                    with bench_cgroups("memory", size, configure=set_limit) as directories:
                        procs = [str(d / "cgroup.procs") for d in directories]
                        limits = [limit_of(i) for i in range(size)]
                        _, cpu_before = process_figures(pid)
                        if args.profile and size == max(sizes):
                            raw = base / "profile.raw"
                            with profiling.recording(pid, raw):
                                started = time.monotonic()
                                ours = read_round_robin(base / "pv", procs, limits, args.reads)
                                wall = time.monotonic() - started
                            profiled = (size, profiling.breakdown(raw), wall)
                        else:
                            ours = read_round_robin(base / "pv", procs, limits, args.reads)
                        rss, cpu_after = process_figures(pid)
                        theirs = (
                            read_round_robin(base / "lx", procs, limits, args.reads)
                            if lxcfs
                            else None
                        )
                    wrong_total += int(ours["wrong"])
                    rows.append((size, ours["median_ns"], theirs, rss, cpu_after - cpu_before))
            _, idle_before = process_figures(pid)
            time.sleep(5)
            rss, idle_after = process_figures(pid)
    print(
        f"procfs-view scale: one reader hopping over N cgroups, {args.reads} reads each "
        f"(kernel {os.uname().release}, {os.cpu_count()} CPUs)"
    )
    print(
        "| cgroups | procfs-view µs | vs N=1 | LXCFS µs | procfs-view / LXCFS | RSS MiB | CPU s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    first = rows[0][1]
    for size, ours_ns, theirs, rss, cpu in rows:
        lxcfs_ns = None if theirs is None else theirs["median_ns"]
        print(
            f"| {size} | {ours_ns / 1000:.0f} | {ours_ns / first:.2f}x | "
            f"{'-' if lxcfs_ns is None else f'{lxcfs_ns / 1000:.0f}'} | "
            f"{'-' if lxcfs_ns is None else f'{ours_ns / lxcfs_ns:.2f}x'} | "
            f"{rss / 1024:.1f} | {cpu:.2f} |"
        )
    print(
        f"idle: {idle_after - idle_before:.3f} CPU s over 5 s; RSS {rss / 1024:.1f} MiB; "
        f"wrong answers: {wrong_total}"
    )
    if profiled is not None:
        size, parts, wall = profiled
        profiling.print_breakdown(
            f"procfs-view profile, one reader hopping over {size} cgroups (hops included)",
            parts,
            wall,
            args.reads + size,
        )
    return 1 if wrong_total else 0


if __name__ == "__main__":
    raise SystemExit(main())
