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


#: What a shown uptime may lag the clock by: its two decimals are rounded, so a copy moved
#: on by the time elapsed could be ahead of the next one computed afresh by up to this.
_ROUNDING = 0.01


def advance(content: bytes, seconds: float) -> bytes:
    """``content`` (a rendered /proc/uptime) as it reads ``seconds`` later: the uptime
    moved on with the clock, the idle as it was (it moves at the next computation; it
    never goes back). A cached copy read again must show time passing, or a tool taking
    rates between two reads (top's per-process %CPU) divides by zero; it stays at most
    _ROUNDING behind the clock, so the next computed one never shows less."""
    fields = content.split()
    try:
        uptime = float(fields[0]) + max(0.0, seconds - _ROUNDING)
    except (IndexError, ValueError):
        return content  # not an uptime line: what was served, as it was
    return b"%.2f %s\n" % (uptime, b" ".join(fields[1:]))
