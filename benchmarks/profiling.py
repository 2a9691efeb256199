"""Where the daemon's time goes: py-spy on the running daemon, folded into a few parts.

Used by ``read_latency.py --profile`` and ``scale.py --profile``. py-spy samples the
daemon's whole wall-clock time (``--idle``, so time asleep in epoll counts too) with
native frames, and every sample is put in the first part whose test matches its stack.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

#: (part, does a stack belong to it): the first match wins. A stack is its frame names
#: from the outermost in, with the file or library part cut off.
Stack = list[str]
_SYSCALL_LEAVES = ("pread", "read", "open64", "__open64_nocancel", "close", "statx",
                   "__fstat", "fstat", "__GI___fstatat64", "fstatat64", "__xstat")  # fmt: skip


def _under(name: str) -> Callable[[Stack], bool]:
    return lambda stack: any(frame.startswith(name) for frame in stack)


#: The service's one answering path (open_answer and reread both go through it).
_ANSWER = "ViewService._answer"


def _answer_syscall(stack: Stack) -> bool:
    return _under(_ANSWER)(stack) and stack[-1].startswith(_SYSCALL_LEAVES)


def _leaf(name: str) -> Callable[[Stack], bool]:
    return lambda stack: stack[-1].startswith(name)


PARTS: tuple[tuple[str, Callable[[Stack], bool]], ...] = (
    ("answer(): reading cgroup, /proc/<pid> and host files (syscalls)", _answer_syscall),
    ("answer(): Python (parse, compute, render, cache, metrics)", _under(_ANSWER)),
    ("FUSE reply: writev to /dev/fuse (wakes the reader)", _leaf("writev")),
    ("FUSE receive: read from /dev/fuse", _leaf("read")),
    ("busy-poll for the next request (poll, sched_yield)", _under("_Readiness")),
    ("trio run loop (epoll_wait, scheduling, other tasks)", _under("EpollIOManager")),
    ("pyfuse3 dispatch and our handlers (Cython, errno boundary, handles)",
     _under("__pyx_gb_7pyfuse3")),
    ("other (trio's run loop, signal and sampler tasks)", lambda stack: True),
)  # fmt: skip


def _frames(line: str) -> tuple[Stack, int]:
    stack_text, _, count = line.rstrip("\n").rpartition(" ")
    frames = [frame.split(" (")[0] for frame in stack_text.split(";")]
    return frames, int(count)


def breakdown(raw: Path) -> list[tuple[str, float]]:
    """(part, share of the daemon's main-thread wall time) from py-spy ``--format raw``.

    Threads other than trio's (its idle worker-thread cache) are left out.
    """
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        if any("WorkerThread" in frame or "_thread_cache" in frame for frame in frames):
            continue
        part = next(name for name, test in PARTS if test(frames))
        counts[part] += count
    total = sum(counts.values()) or 1
    return [(name, counts[name] / total) for name, _ in PARTS if counts[name]]


def available() -> str | None:
    """Why profiling cannot run here, or None."""
    return None if shutil.which("py-spy") else "py-spy is not installed (pip install py-spy)"


@contextlib.contextmanager
def recording(pid: int, out: Path, rate: int = 97) -> Iterator[None]:
    """py-spy ``record`` of ``pid`` while the block runs (SIGINT makes it write ``out``).

    97 Hz: each sample stops the daemon while py-spy unwinds its native stack, which took
    1-3 ms on a 2-vCPU VM: at 997 Hz the daemon was stopped nearly all the time (35 ms per
    read instead of 0.07), at 197 Hz reads took 1.6x as long, at 97 Hz 1.06x."""
    argv = ["py-spy", "record", "--pid", str(pid), "--rate", str(rate), "--idle",
            "--native", "--format", "raw", "--output", str(out)]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attached and sampling
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        if not out.exists():
            raise SystemExit(f"py-spy wrote no profile: {err.decode(errors='replace')}")


def print_breakdown(
    title: str, parts: list[tuple[str, float]], wall_seconds: float, reads: int
) -> None:
    """``breakdown``'s parts as shares and as microseconds per read (wall time over reads)."""
    per_read_us = wall_seconds / max(1, reads) * 1e6
    print(f"\n{title}: {reads} reads in {wall_seconds:.1f} s = {per_read_us:.1f} us of the "
          f"daemon's wall time per read")  # fmt: skip
    print(f"| {'part':<66} | share | us per read |")
    print(f"| {'---':<66} | ---: | ---: |")
    for name, share in parts:
        print(f"| {name:<66} | {share * 100:4.1f}% | {share * per_read_us:6.1f} |")
