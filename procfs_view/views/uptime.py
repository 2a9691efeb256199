"""/proc/uptime of a container: time since its init started, and its CPUs' idle time."""

from __future__ import annotations


def compute(
    host_uptime: float, init_start: float, cpu_usage_seconds: float, cpus: int = 1
) -> tuple[float, float]:
    """(uptime, idle) in seconds.

    Uptime is measured from the container init's start (seconds after boot). Idle is, as
    the kernel's, summed over the CPUs the container is shown: ``cpus`` times the uptime
    less the cgroup's CPU time, never negative. (LXCFS takes one CPU's worth and shows
    the whole uptime as idle once the CPU time exceeds it; our earlier versions showed 0
    then. Either way a container busy on two CPUs saw its idle go down.) With the cgroup
    limited to those CPUs the idle never goes back, but for a cpuset narrowed under a
    running container, which takes the removed CPUs' idle away.
    """
    uptime = max(0.0, host_uptime - init_start)
    idle = max(0.0, uptime * max(1, cpus) - max(0.0, cpu_usage_seconds))
    return uptime, idle


def render(host_uptime: float, init_start: float, cpu_usage_seconds: float, cpus: int = 1) -> bytes:
    uptime, idle = compute(host_uptime, init_start, cpu_usage_seconds, cpus)
    return f"{uptime:.2f} {idle:.2f}\n".encode()
