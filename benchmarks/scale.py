"""Latency as the number of containers grows: 1, 100 and 1000 cgroups read round-robin.

Not a test: run it as root from a checkout::

    python benchmarks/scale.py [--sizes 1,100,1000] [--reads 3000] [--rounds 5] [--profile]
                               [--daemon-args '--cache-ttl 0']

It makes as many memory cgroups as the largest size (limits 64..163 MiB, so every answer
can be checked) with a sleeping process in each, and mounts procfs-view (default options)
and, when installed, LXCFS. For each size N one reader hops over the first N cgroups (it
moves itself; the move is not timed), timing open+read+close of proc/meminfo, and checks
every answer's MemTotal against its cgroup's limit, so a cache that crossed containers
would be reported; the host's own /proc/meminfo read the same way is the native baseline.
Sizes and mounts are interleaved, ``--rounds`` times over, and each figure is the median
over rounds of a run's median, so a noisy neighbour slows all columns alike instead of
one size. Printed: latency per N and its ratio to N=1, procfs-view / LXCFS, procfs-view's
RSS and CPU time per run, then its CPU use over 5 idle seconds. ``--profile`` samples
procfs-view with py-spy during the first round's largest size and prints where its time
goes (profiling.py). ``--daemon-args`` passes options to procfs-view: with ``--cache-ttl
0`` every read computes its answer at every N, which tells what N itself costs apart from
the rendered-file cache. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import profiling
from benchcgroups import bench_cgroups
from read_latency import mounted

MIB = 1024 * 1024

# Hops between cgroups and times each read; prints JSON {median_ns, wrong}.
READER = """
import json, os, statistics, sys, time
root, reads, check = sys.argv[1], int(sys.argv[4]), sys.argv[5] == "check"
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
    if check and total_kb != limits[index] // 1024:
        wrong += 1
print(json.dumps({"median_ns": statistics.median(samples), "wrong": wrong}))
"""


@dataclass(frozen=True)
class Target:
    """One thing the reader reads: a mount (or ``/`` for the host's own files)."""

    label: str
    root: Path
    checked: bool = True  # its MemTotal is the cgroup's


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
    target: Target, procs: list[str], limits: list[int], reads: int
) -> dict[str, float]:
    """Run the hopping reader (a child, so the benchmark itself never changes cgroup)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            READER,
            str(target.root),
            json.dumps(procs),
            json.dumps(limits),
            str(reads),
            "check" if target.checked else "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def daemon_pid(pidfile: Path) -> int:
    return int(pidfile.read_text().split()[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="py-spy the largest size")
    parser.add_argument(
        "--daemon-args",
        default="",
        help="extra procfs-view options, e.g. '--cache-ttl 0' (every read a miss at every N)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("scale: needs root (cgroups, mounts)", file=sys.stderr)
        return 2
    if args.profile and (problem := profiling.available()) is not None:
        print(problem, file=sys.stderr)
        return 2
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    lxcfs = shutil.which("lxcfs")
    medians: dict[tuple[str, int], list[float]] = defaultdict(list)
    rss_kib: dict[int, int] = defaultdict(int)
    cpu_seconds: dict[int, list[float]] = defaultdict(list)
    wrong_total = 0
    profiled: tuple[list[tuple[str, float]], float] | None = None
    with (
        tempfile.TemporaryDirectory(prefix="procfs-view-scale-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        base = Path(tmp)
        daemon = [sys.executable, "-m", "procfs_view", *shlex.split(args.daemon_args)]
        stack.enter_context(
            mounted([*daemon, "--pidfile", str(base / "pv.pid"), str(base / "pv")],
                    base / "pv", "procfs-view", base / "pv.log")
        )  # fmt: skip
        targets = [Target("procfs-view", base / "pv")]
        if lxcfs:
            stack.enter_context(
                mounted([lxcfs, "-f", "-p", str(base / "lxcfs.pid"), str(base / "lx")],
                        base / "lx", "lxcfs", base / "lx.log")
            )  # fmt: skip
            targets.append(Target("LXCFS", base / "lx"))
        targets.append(Target("native", Path("/"), checked=False))
        pid = daemon_pid(base / "pv.pid")
        directories = stack.enter_context(bench_cgroups("memory", max(sizes), configure=set_limit))
        procs = [str(d / "cgroup.procs") for d in directories]
        limits = [limit_of(i) for i in range(len(directories))]
        for round_index in range(args.rounds):
            for size in sizes:
                for target in targets:
                    ours = target.label == "procfs-view"
                    _, cpu_before = process_figures(pid)
                    profile = args.profile and ours and size == sizes[-1] and round_index == 0
                    with contextlib.ExitStack() as sampling:
                        if profile:
                            sampling.enter_context(profiling.recording(pid, base / "profile.raw"))
                        started = time.monotonic()
                        result = read_round_robin(target, procs[:size], limits[:size], args.reads)
                        wall = time.monotonic() - started
                    if profile:
                        profiled = (profiling.breakdown(base / "profile.raw"), wall)
                    if ours:
                        rss, cpu_after = process_figures(pid)
                        rss_kib[size] = max(rss_kib[size], rss)
                        cpu_seconds[size].append(cpu_after - cpu_before)
                    medians[target.label, size].append(result["median_ns"])
                    wrong_total += int(result["wrong"])
        _, idle_before = process_figures(pid)
        time.sleep(5)
        rss, idle_after = process_figures(pid)
    print(
        f"procfs-view scale: one reader hopping over N cgroups, {args.reads} reads per run, "
        f"median of {args.rounds} interleaved runs (kernel {os.uname().release}, "
        f"{os.cpu_count()} CPUs)"
        + (f", procfs-view {args.daemon_args}" if args.daemon_args else "")
    )
    labels = [target.label for target in targets]
    header = "| cgroups |" + "".join(
        f" {label} µs | vs N=1 |" if label != "native" else " native µs |" for label in labels
    )
    header += " procfs-view / LXCFS | RSS MiB | CPU s per run |" if lxcfs else " RSS MiB | CPU s |"
    print(header)
    print("|" + " ---: |" * (header.count("|") - 1))

    def median_us(label: str, size: int) -> float:
        return statistics.median(medians[label, size]) / 1000

    for size in sizes:
        cells = [str(size)]
        for label in labels:
            value = median_us(label, size)
            cells.append(f"{value:.0f}")
            if label != "native":
                cells.append(f"{value / median_us(label, sizes[0]):.2f}x")
        if lxcfs:
            cells.append(f"{median_us('procfs-view', size) / median_us('LXCFS', size):.2f}x")
        cells.append(f"{rss_kib[size] / 1024:.1f}")
        cells.append(f"{statistics.mean(cpu_seconds[size]):.2f}")
        print("| " + " | ".join(cells) + " |")
    print(
        f"idle: {idle_after - idle_before:.3f} CPU s over 5 s; RSS {rss / 1024:.1f} MiB; "
        f"wrong answers: {wrong_total}"
    )
    if profiled is not None:
        parts, wall = profiled
        profiling.print_breakdown(
            f"procfs-view profile, one reader hopping over {sizes[-1]} cgroups (hops included)",
            parts,
            wall,
            args.reads + sizes[-1],
        )
    return 1 if wrong_total else 0


if __name__ == "__main__":
    raise SystemExit(main())
