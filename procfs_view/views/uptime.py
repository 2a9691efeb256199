"""/proc/uptime of a container: time since its init started, and idle time left over."""

from __future__ import annotations


def compute(host_uptime: float, init_start: float, cpu_usage_seconds: float) -> tuple[float, float]:
    """(uptime, idle) in seconds.

    Uptime is measured from the container init's start (seconds after boot). Idle is the
    uptime less the cgroup's CPU time, never negative (LXCFS falls back to the uptime
    itself, which makes a busy container look idle).
    """
    uptime = max(0.0, host_uptime - init_start)
    idle = max(0.0, uptime - max(0.0, cpu_usage_seconds))
    return uptime, idle


def render(host_uptime: float, init_start: float, cpu_usage_seconds: float) -> bytes:
    uptime, idle = compute(host_uptime, init_start, cpu_usage_seconds)
    return f"{uptime:.2f} {idle:.2f}\n".encode()
