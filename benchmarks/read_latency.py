"""Read latency and throughput of procfs-view against LXCFS and the native files.

Not a test: run it as root on a quiet machine, from a checkout::

    python benchmarks/read_latency.py [--iterations 2000] [--paced 12] [--pause 0.15]
                                      [--seconds 2] [--rounds 3] [--profile]
                                      [--daemon-args '--cache-ttl 0']

It mounts procfs-view with its defaults (and LXCFS, when ``lxcfs`` is installed) in a
temporary directory and makes test cgroups (256 MiB, cpuset 0, quota 50000/100000), so
both daemons do their full per-container work. One reader in one of them measures the
median open+read+close time per file, back to back, then ``--paced`` times each after
``--pause`` seconds asleep (what top, free and agents do: each read finds the daemon idle,
its CPU halted and its caches cold); then 1, 4 and 16 readers, each in a cgroup of its
own (limits 256 MiB + its index, checked in every meminfo it reads), read all files
round-robin for a fixed time and we count reads per second (``--rounds`` runs per daemon
and reader count, interleaved; the median is printed). ``--profile`` then samples
procfs-view with py-spy while one reader (256 MiB, cpuset 0, no CPU quota, so it is never
throttled) reads all files round-robin, and prints where the daemon's time goes (see
profiling.py). ``--daemon-args`` passes options to procfs-view (``--cache-ttl 0``: every
answer computed afresh, as at scale.py's largest sizes). Everything started here is
stopped by pid and unmounted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

# Run as a script from a checkout: the test-cgroup helper lives in tests/.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import profiling  # noqa: E402

from tests.cgroups import TestCgroup, test_cgroup  # noqa: E402

FILES = (
    "proc/meminfo",
    "proc/cpuinfo",
    "proc/stat",
    "proc/uptime",
    "proc/loadavg",
    "proc/diskstats",
    "proc/swaps",
    "sys/devices/system/cpu/online",
)
CONCURRENCY = (1, 4, 16)
MIB = 1024 * 1024

# One reader: per file, the median of N open+read-to-EOF+close, in nanoseconds. The N are
# taken in 10 slices, and every slice visits every file on every root, so a noisy spell
# of the machine lands on all of them rather than on one root's files. With a pause
# (argv[4] seconds > 0) every read comes after that long asleep, as top's, free's or an
# agent's do: the daemons (and the reader) start from idle CPUs and cold caches.
LATENCY_READER = """
import json, os, statistics, sys, time
roots, files, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
pause = float(sys.argv[4])
def once(path):  # returns the ns the open took: procfs-view computes its answer there
    t = time.perf_counter_ns()
    fd = os.open(path, os.O_RDONLY)
    opened = time.perf_counter_ns() - t
    while os.read(fd, 65536):
        pass
    os.close(fd)
    return opened
paths = {(name, f): os.path.join(root, f) for name, root in roots.items() for f in files}
samples = {key: [] for key in paths}
opens = {key: [] for key in paths}
for path in paths.values():
    for _ in range(min(50, n)):
        once(path)
slices = max(1, n) if pause else 10  # paced: one read per path per slice
for part in range(slices):
    count = n // slices + (part < n % slices)
    for key, path in paths.items():
        taken = samples[key]
        for _ in range(count):
            if pause:
                time.sleep(pause)
            t = time.perf_counter_ns()
            opens[key].append(once(path))
            taken.append(time.perf_counter_ns() - t)
result = {name: {f: statistics.median(samples[name, f]) for f in files} for name in roots}
result["open"] = {name: {f: statistics.median(opens[name, f]) for f in files} for name in roots}
print(json.dumps(result))
"""

# Many readers: all files round-robin until the deadline; prints how many reads it did and
# how many of its meminfo reads showed another MemTotal than its cgroup's (argv[5] KiB; 0
# for the native files, which show the host's).
THROUGHPUT_READER = """
import os, sys, time
root, files = sys.argv[1], sys.argv[2].split(",")
start, seconds, expected = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
paths = [(os.path.join(root, f), f == "proc/meminfo" and expected) for f in files]
while time.time() < start:
    time.sleep(0.001)
deadline, count, wrong = start + seconds, 0, 0
while time.time() < deadline:
    for path, check in paths:
        fd = os.open(path, os.O_RDONLY)
        data = os.read(fd, 65536)
        while os.read(fd, 65536):
            pass
        os.close(fd)
        count += 1
        if check and int(data.split(b"\\n", 1)[0].split()[1]) != expected:
            wrong += 1
print(count, wrong)
"""


def is_mounted(path: Path) -> bool:
    target = str(path)
    return any(
        line.split()[4] == target for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )


def wait_for(path: Path, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while not (is_mounted(path) and (path / "proc/meminfo").exists()):
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before mounting")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not mount {path} within 30 s")
        time.sleep(0.05)


@contextlib.contextmanager
def mounted(argv: Sequence[str], mountpoint: Path, what: str, log: Path) -> Iterator[Path]:
    """Run a FUSE daemon in the foreground; SIGTERM it by pid and make sure it unmounted."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with log.open("wb") as log_file:
        process = subprocess.Popen(list(argv), stdout=log_file, stderr=log_file, env=env)
    try:
        wait_for(mountpoint, process, what)
        yield mountpoint
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        if is_mounted(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)


def latency(
    cgroup: TestCgroup, roots: dict[str, str], iterations: int, pause: float = 0.0
) -> dict[str, Any]:
    """Median open+read+close per root and file, back to back or ``pause`` s apart."""
    out = cgroup.run(
        [
            sys.executable,
            "-c",
            LATENCY_READER,
            json.dumps(roots),
            json.dumps(FILES),
            str(iterations),
            str(pause),
        ],
        timeout=600 + iterations * len(roots) * len(FILES) * pause,
    )
    result: dict[str, Any] = json.loads(out)
    return result


def reader_limit(index: int) -> int:
    """Memory limit of the ``index``-th throughput reader's cgroup, in bytes."""
    return (256 + index) * MIB


def throughput(
    cgroups: Sequence[TestCgroup], root: str, readers: int, seconds: float, check: bool
) -> tuple[float, int]:
    """(reads per second, wrong MemTotals) of ``readers`` readers, one per cgroup."""
    start = time.time() + 1.0 + readers * 0.05  # every reader has started by then
    processes = []
    for index in range(readers):
        expected = reader_limit(index) // 1024 if check else 0
        argv = [sys.executable, "-c", THROUGHPUT_READER, root, ",".join(FILES), str(start),
                str(seconds), str(expected)]  # fmt: skip
        processes.append(cgroups[index].spawn(argv, stdout=subprocess.PIPE, text=True))
    total = wrong = 0
    for process in processes:
        out, _ = process.communicate(timeout=seconds + 120)
        count, mismatches = out.split()
        total += int(count)
        wrong += int(mismatches)
    return total / seconds, wrong


def profile(cgroup: TestCgroup, root: Path, pid: int, seconds: float, work: Path) -> None:
    """Sample procfs-view while one reader in ``cgroup`` reads every file round-robin."""
    raw = work / "profile.raw"
    argv = [sys.executable, "-c", THROUGHPUT_READER, str(root), ",".join(FILES),
            str(time.time() + 0.5), str(seconds), "0"]  # fmt: skip
    with profiling.recording(pid, raw):
        started = time.monotonic()
        reads = int(cgroup.run(argv, timeout=seconds + 120).split()[0])
        wall = time.monotonic() - started - 0.5
    profiling.print_breakdown(
        "procfs-view profile, one reader, all files round-robin",
        profiling.breakdown(raw),
        wall,
        reads,
    )


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def number(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value / scale:,.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="reads per file (latency)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs (median)")
    parser.add_argument(
        "--paced", type=int, default=12, help="reads per file after an idle pause (0: none)"
    )
    parser.add_argument("--pause", type=float, default=0.15, help="seconds idle before each")
    parser.add_argument("--no-lxcfs", action="store_true", help="skip LXCFS even if installed")
    parser.add_argument(
        "--profile", action="store_true", help="then profile procfs-view with py-spy"
    )
    parser.add_argument("--profile-seconds", type=float, default=5.0)
    parser.add_argument(
        "--daemon-args",
        default="",
        help="extra procfs-view options, e.g. '--cache-ttl 0' (every answer computed afresh)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (FUSE mounts with allow_other, test cgroups)", file=sys.stderr)
        return 2
    if args.profile and (problem := profiling.available()) is not None:
        print(problem, file=sys.stderr)
        return 2
    lxcfs = None if args.no_lxcfs else shutil.which("lxcfs")

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pv-bench-")))
        readers = [
            stack.enter_context(
                test_cgroup(memory_limit=reader_limit(index), cpus="0", cfs=(50_000, 100_000))
            )
            for index in range(max(CONCURRENCY))
        ]
        cgroup = readers[0]
        roots = {"native": "/"}
        pv = work / "procfs-view"
        pv_argv = [
            sys.executable, "-m", "procfs_view", *shlex.split(args.daemon_args),
            "--pidfile", str(work / "procfs-view.pid"), "--runtime-dir", str(work), str(pv),
        ]  # fmt: skip
        roots["procfs-view"] = str(
            stack.enter_context(mounted(pv_argv, pv, "procfs-view", work / "pv.log"))
        )
        if lxcfs is not None:
            lx = work / "lxcfs"
            lx_argv = [lxcfs, "-p", str(work / "lxcfs.pid"), str(lx)]
            roots["lxcfs"] = str(
                stack.enter_context(mounted(lx_argv, lx, "lxcfs", work / "lx.log"))
            )

        lat = latency(cgroup, roots, args.iterations)
        paced = latency(cgroup, roots, args.paced, args.pause) if args.paced > 0 else None
        runs: dict[tuple[str, int], list[float]] = defaultdict(list)
        wrong = 0
        for _round in range(args.rounds):  # interleaved: a noisy spell hits every column
            for n in CONCURRENCY:
                for name, root in roots.items():
                    rate, mismatches = throughput(
                        readers, root, n, args.seconds, check=name != "native"
                    )
                    runs[name, n].append(rate)
                    if name == "procfs-view":
                        wrong += mismatches
        tput = {name: {n: statistics.median(runs[name, n]) for n in CONCURRENCY} for name in roots}
        report(lat, paced, tput, lxcfs is not None, args)
        print(f"procfs-view meminfo reads showing another cgroup's MemTotal: {wrong}")
        if args.profile:
            pid = int((work / "procfs-view.pid").read_text().split()[0])
            # No CPU quota: a throttled reader would leave the daemon asleep half the time.
            unthrottled = stack.enter_context(test_cgroup(memory_limit=256 * MIB, cpus="0"))
            profile(unthrottled, pv, pid, args.profile_seconds, work)
    return 1 if wrong else 0


def comparison_table(
    title: str,
    unit: str,
    rows: Iterable[tuple[object, float, float, float | None]],
    cell: Callable[[float | None], str],
    with_lxcfs: bool,
) -> None:
    """One row per (label, native, procfs-view, LXCFS figure), with the ratios."""
    header = f"{title:<32}{'native' + unit:>10}{'procfs-view' + unit:>16}"
    if with_lxcfs:
        header += f"{'lxcfs' + unit:>10}{'pv/lxcfs':>10}"
    print(header + f"{'pv/native':>11}")
    for label, native, pv, lx in rows:
        line = f"{label!s:<32}{cell(native):>10}{cell(pv):>16}"
        if with_lxcfs:
            line += f"{cell(lx):>10}{ratio(pv, lx):>10}"
        print(line + f"{ratio(pv, native):>11}")


def latency_table(lat: dict[str, Any], with_lxcfs: bool) -> None:
    lx = lat.get("lxcfs", {})
    rows = [(f, lat["native"][f], lat["procfs-view"][f], lx.get(f)) for f in FILES]
    comparison_table("file", " us", rows, lambda ns: number(ns, 1000), with_lxcfs)


def report(
    lat: dict[str, Any],
    paced: dict[str, Any] | None,
    tput: dict[str, dict[int, float]],
    with_lxcfs: bool,
    args: argparse.Namespace,
) -> None:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    print(f"# {os.uname().nodename}: {cpu}, {os.cpu_count()} CPUs, kernel {os.uname().release}")
    print(
        f"# reader in a test cgroup (256 MiB, cpuset 0, quota 0.5 CPU); median of "
        f"{args.iterations} open+read+close per file; throughput: median of {args.rounds} "
        f"interleaved runs of {args.seconds:g} s, each reader in a cgroup of its own"
        + (f"; procfs-view {args.daemon_args}" if args.daemon_args else "")
    )
    print()
    latency_table(lat, with_lxcfs)
    if paced is not None:
        print()
        print(
            f"after {args.pause:g} s idle before each read (as top, free or an agent read), "
            f"median of {args.paced} per file, files and roots interleaved"
        )
        latency_table(paced, with_lxcfs)
        print()
        print("of which open() (procfs-view computes its answer at open, LXCFS at the first read)")
        opened = paced["open"]
        rows = [
            (f, opened["native"][f], opened["procfs-view"][f], opened.get("lxcfs", {}).get(f))
            for f in FILES
        ]
        comparison_table("file", " us", rows, lambda ns: number(ns, 1000), with_lxcfs)
    print()
    print("throughput: reads per second of all files round-robin (higher is better)")
    rows = [
        (n, tput["native"][n], tput["procfs-view"][n], tput.get("lxcfs", {}).get(n))
        for n in CONCURRENCY
    ]
    comparison_table(
        "readers", "", rows, lambda rate: "-" if rate is None else f"{rate:,.0f}", with_lxcfs
    )


if __name__ == "__main__":
    raise SystemExit(main())
