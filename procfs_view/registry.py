"""The one table: every served path, where its host original lives, and how it is built.

The FUSE layer builds its tree from this table; ``procfs-view show`` resolves names in it.
Each builder only wires a ``Request`` (the I/O side) to a pure view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from procfs_view.errors import ServeHost
from procfs_view.views import (
    cpu_online,
    cpuinfo,
    diskstats,
    loadavg,
    meminfo,
    pressure,
    stat,
    swaps,
    uptime,
)

if TYPE_CHECKING:
    from procfs_view.options import ViewOptions
    from procfs_view.service import Request


@dataclass(frozen=True)
class ServedFile:
    """A file under the mountpoint. ``host_path`` is absolute as on a real host (``/proc/...``
    or ``/sys/...``); the service maps it onto its injectable roots. ``host_only(options)``
    True means every caller gets the host file under those options (the service then reads
    no cgroup at all).

    ``freshness`` and ``aged`` are for files tools divide by the time between two reads
    (rates, CPU %): a copy from the render cache read again within its TTL showed no
    time passing, so ``top -d 0.05`` showed frames of 0 % CPU, then a process at 99.9 %.
    ``freshness="reread"``: a re-read of an open file (``top`` keeps /proc/stat open and
    seeks back) is computed afresh. ``aged(content, seconds)``: what a cached copy shows
    ``seconds`` after it was computed (uptime, which ``top`` opens for every frame, moves
    on with the clock)."""

    path: str
    host_path: str
    build: Callable[[Request], bytes]
    needs_unified: bool = False
    host_only: Callable[[ViewOptions], bool] = lambda options: False
    freshness: Literal["ttl", "reread"] = "ttl"
    aged: Callable[[bytes, float], bytes] | None = None


def _meminfo(request: Request) -> bytes:
    return meminfo.render(request.host_meminfo, request.memory(), request.options.swap)


def _swaps(request: Request) -> bytes:
    total, used = meminfo.swap_figures(request.host_meminfo, request.memory(), request.options.swap)
    return swaps.render(total, used)


def _cpuinfo(request: Request) -> bytes:
    return cpuinfo.render(request.host.cpuinfo(), request.visible_cpus())


def _online(request: Request) -> bytes:
    return cpu_online.render(request.visible_cpus())


def _stat(request: Request) -> bytes:
    """Stateful: counters continue from the previous read by a caller with the same usage
    cgroup and visible-CPU cgroups, and never go back. A caller whose CPU time is the
    root cgroup's gets the host's lines of the CPUs it is shown (all of them: the host
    file), as LXCFS does: nproc and /proc/stat must agree."""
    host = request.host.stat()
    if request.cpu_usage_at_root():
        cpus = request.visible_cpus()
        if not stat.restricted(host, cpus):
            raise ServeHost("caller is in the root cgroup, on every CPU")
        return stat.render_lines(host, stat.host_cpu_lines(host, cpus))
    key, identity = request.cpu_state_key()
    states = request.service.stat_states
    lines, state = stat.advance(
        host,
        request.cpu_usage(),
        request.visible_cpus(),
        request.user_hz,
        request.cpu_quota().cpus,
        states.get(key),
        identity,
    )
    states.put(key, state)
    return stat.render_lines(host, lines)


def _uptime(request: Request) -> bytes:
    host_uptime, _ = request.host.uptime()
    return uptime.render(
        host_uptime,
        request.container_start(),
        request.cpu_seconds_or_zero(),
        request.cpu_count_or_one(),
    )


def _loadavg(request: Request) -> bytes:
    return loadavg.render(request.load_sample())


def _diskstats(request: Request) -> bytes:
    """Stateful: counters continue from the cgroup's previous read and never go back."""
    io = request.io()  # first: where blkio counts nothing this serves the host file
    cgroup, identity = request.io_cgroup()
    states = request.service.disk_states
    text, state = diskstats.advance(request.host.diskstats(), io, identity, states.get(cgroup))
    states.put(cgroup, state)
    return text


def _pressure(resource: str) -> Callable[[Request], bytes]:
    def build(request: Request) -> bytes:
        return pressure.render(request.pressure(resource))

    return build


SERVED_FILES: tuple[ServedFile, ...] = (
    ServedFile("proc/cpuinfo", "/proc/cpuinfo", _cpuinfo),
    ServedFile("proc/diskstats", "/proc/diskstats", _diskstats, freshness="reread"),
    ServedFile("proc/loadavg", "/proc/loadavg", _loadavg, host_only=lambda o: not o.loadavg),
    ServedFile("proc/meminfo", "/proc/meminfo", _meminfo),
    ServedFile("proc/stat", "/proc/stat", _stat, freshness="reread"),
    ServedFile("proc/swaps", "/proc/swaps", _swaps),
    ServedFile("proc/uptime", "/proc/uptime", _uptime, aged=uptime.advance),
    ServedFile("proc/pressure/cpu", "/proc/pressure/cpu", _pressure("cpu"), True),
    ServedFile("proc/pressure/io", "/proc/pressure/io", _pressure("io"), True),
    ServedFile("proc/pressure/memory", "/proc/pressure/memory", _pressure("memory"), True),
    ServedFile("sys/devices/system/cpu/online", "/sys/devices/system/cpu/online", _online),
)

BY_PATH: dict[str, ServedFile] = {served.path: served for served in SERVED_FILES}


def resolve(name: str) -> ServedFile | None:
    """Find a served file by path or unambiguous trailing components: ``meminfo``,
    ``proc/meminfo``, ``/proc/meminfo``, ``cpu/online``, ``pressure/io``."""
    wanted = name.strip("/")
    if wanted in BY_PATH:
        return BY_PATH[wanted]
    matches = [s for s in SERVED_FILES if s.path.endswith("/" + wanted)]
    return matches[0] if len(matches) == 1 else None
