"""Why a read after an idle spell costs more than a back-to-back one: the daemon's work, cold.

Not a test: run it as root from a checkout::

    python benchmarks/cold_answer.py [--samples 15] [--sleeps 0,0.001,0.01,0.05,0.15]

read_latency.py shows procfs-view slower than LXCFS only for reads that come after a
pause (as top's, free's and agents' do), and its "of which open()" table puts all of it
in the open, where the daemon computes its answer. This script times that computation
in-process, with no FUSE in between: ``ViewService.answer`` for a process in a test
cgroup (256 MiB, cpuset 0), once right after the previous call and once after each of
``--sleeps`` seconds asleep. The render cache (0.1 s) and the host-input cache are
emptied before every timed call, so every row computes the same answer and only the
sleep differs. Then what two single steps cost after 0.15 s asleep against back to back:
a ``pread`` of ``/proc/<pid>/cgroup`` on a kept descriptor, and waking a task on a pipe
write from another thread, through trio (how the daemon waits for the kernel's next FUSE
request) and through a blocking ``poll``. A row that grows with the sleep is working set
evicted while asleep (by the machine's other tenants), not a wake-up cost; so is one that a
millisecond of busy looping before the call (the CPU awake again) does not bring down.
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procfs_view.service import ViewService
from tests.cgroups import test_cgroup

FILES = (
    "proc/meminfo",
    "proc/cpuinfo",
    "proc/stat",
    "proc/uptime",
    "proc/diskstats",
    "proc/swaps",
    "sys/devices/system/cpu/online",
)
MIB = 1024 * 1024


def median_us(samples: Sequence[int]) -> float:
    return statistics.median(samples) / 1000


def timed_after(
    sleep: float, action: Callable[[], object], samples: int, spin: float = 0.0
) -> float:
    """Median µs of ``action`` run ``sleep`` seconds after the previous one (and after
    ``spin`` seconds of a busy Python loop: an awake CPU, but caches still cold for us)."""
    taken = []
    for _ in range(samples):
        if sleep:
            time.sleep(sleep)
        spin_until = time.perf_counter() + spin
        while time.perf_counter() < spin_until:
            pass
        started = time.perf_counter_ns()
        action()
        taken.append(time.perf_counter_ns() - started)
    return median_us(taken)


def wake_latency(sleep: float, samples: int, through_trio: bool) -> float:
    """Median µs from a pipe write in another thread to the waiting task running."""
    read_end, write_end = os.pipe()
    written: list[int] = []
    woken: list[int] = []

    def writer() -> None:
        for _ in range(samples):
            time.sleep(sleep)
            written.append(time.perf_counter_ns())
            os.write(write_end, b"x")

    async def trio_waiter() -> None:
        for _ in range(samples):
            await trio.lowlevel.wait_readable(read_end)
            woken.append(time.perf_counter_ns())
            os.read(read_end, 1)

    thread = threading.Thread(target=writer)
    try:
        if through_trio:
            thread.start()
            trio.run(trio_waiter)
        else:
            poller = select.poll()
            poller.register(read_end, select.POLLIN)
            thread.start()
            for _ in range(samples):
                poller.poll()
                woken.append(time.perf_counter_ns())
                os.read(read_end, 1)
        thread.join()
    finally:
        os.close(read_end)
        os.close(write_end)
    return median_us([after - before for after, before in zip(woken, written, strict=True)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--sleeps", default="0,0.001,0.01,0.05,0.15")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("cold_answer: needs root (a test cgroup)", file=sys.stderr)
        return 2
    sleeps = [float(sleep) for sleep in args.sleeps.split(",")]
    with test_cgroup(memory_limit=256 * MIB, cpus="0") as cgroup:
        sleeper = cgroup.spawn(["sleep", "3600"])
        try:
            service = ViewService(cache_ttl=0.1)

            def fresh_answer(path: str) -> Callable[[], object]:
                def action() -> bytes:
                    service.rendered.clear()
                    service.host.clear()
                    return service.answer(path, sleeper.pid)

                return action

            for path in FILES:
                fresh_answer(path)()
            print(
                f"procfs-view in-process answer (no FUSE), µs, median of {args.samples}; "
                f"every call computes afresh (kernel {os.uname().release}, "
                f"{os.cpu_count()} CPUs)"
            )
            print(
                "| file | "
                + " | ".join(f"after {s:g} s" for s in sleeps)
                + f" | after {sleeps[-1]:g} s, then 1 ms busy |"
            )
            print("| --- |" + " ---: |" * (len(sleeps) + 1))
            for path in FILES:
                cells = [f"{timed_after(s, fresh_answer(path), args.samples):.0f}" for s in sleeps]
                spun = timed_after(sleeps[-1], fresh_answer(path), args.samples, spin=0.001)
                print(f"| {path} | " + " | ".join(cells) + f" | {spun:.0f} |")
            with open(f"/proc/{sleeper.pid}/cgroup", "rb", buffering=0) as handle:
                fd = handle.fileno()

                def pread() -> bytes:
                    return os.pread(fd, 4096, 0)

                pread_warm = timed_after(0, pread, args.samples)
                pread_cold = timed_after(0.15, pread, args.samples)
        finally:
            sleeper.kill()
            sleeper.wait()
    print()
    print("| one step, µs | back to back | after 0.15 s |")
    print("| --- | ---: | ---: |")
    print(f"| pread of /proc/<pid>/cgroup | {pread_warm:.1f} | {pread_cold:.1f} |")
    for label, through_trio in (("trio.lowlevel.wait_readable", True), ("blocking poll", False)):
        warm = wake_latency(0.0005, args.samples, through_trio)
        cold = wake_latency(0.15, args.samples, through_trio)
        print(f"| wake on a pipe write, {label} | {warm:.0f} | {cold:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
