"""/proc/loadavg from a per-cgroup load sample (the sampler lives in the daemon)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadSample:
    """1/5/15-minute averages, runnable and total threads, and the last pid created."""

    avg1: float
    avg5: float
    avg15: float
    running: int
    total: int
    last_pid: int


def render(sample: LoadSample) -> bytes:
    """The kernel's ``%lu.%02lu %lu.%02lu %lu.%02lu %u/%d %d`` layout."""
    return (
        f"{max(0.0, sample.avg1):.2f} {max(0.0, sample.avg5):.2f} {max(0.0, sample.avg15):.2f} "
        f"{max(0, sample.running)}/{max(0, sample.total)} {max(0, sample.last_pid)}\n"
    ).encode()
