"""/proc/uptime of a container: time since its init started, and its CPUs' idle time."""

from __future__ import annotations


def compute(
    host_uptime: float, init_start: float, cpu_usage_seconds: float, cpus: int = 1
) -> tuple[float, float]:
    """(uptime, idle) in seconds.

    Uptime is measured from the container init's start (seconds after boot). Idle is, as
    the kernel's, summed over the CPUs the container is shown: ``cpus`` times the uptime
    less the cgroup's CPU time, never negative. (LXCFS and earlier versions took one
    CPU's worth: a container busy on two CPUs showed 0, and its idle went down while it
    kept them busy.) With the cgroup limited to those CPUs the idle never goes back.
    """
    uptime = max(0.0, host_uptime - init_start)
    idle = max(0.0, uptime * max(1, cpus) - max(0.0, cpu_usage_seconds))
    return uptime, idle


def render(host_uptime: float, init_start: float, cpu_usage_seconds: float, cpus: int = 1) -> bytes:
    uptime, idle = compute(host_uptime, init_start, cpu_usage_seconds, cpus)
    return f"{uptime:.2f} {idle:.2f}\n".encode()
