"""/proc/diskstats with the cgroup's own I/O per device (v1 blkio and v2 io.stat).

Only devices the cgroup has done I/O on are listed (as in LXCFS). The host's field count
is kept (14, 18 with discards since Linux 4.18, 20 with flushes since 5.5; see
Documentation/admin-guide/iostats.rst). Fields the cgroup files do not provide (in-flight
I/Os, and on v2 the time fields) are 0.
"""

from __future__ import annotations

from procfs_view.cgroup.records import IoCounters, IoRecord
from procfs_view.host import DiskLine

SECTOR = 512


def counters_for(io: IoCounters) -> list[int]:
    """The 17 counters after the device name (fields 4-20 of iostats.rst)."""
    return [
        io.read_ios,
        io.read_merged,
        io.read_bytes // SECTOR,
        io.read_time_ms,
        io.write_ios,
        io.write_merged,
        io.write_bytes // SECTOR,
        io.write_time_ms,
        0,  # I/Os currently in progress: not accounted per cgroup
        io.service_time_ms,
        io.read_time_ms + io.write_time_ms,
        io.discard_ios,
        0,  # discards merged
        io.discard_bytes // SECTOR,
        0,  # time discarding
        0,  # flushes completed
        0,  # time flushing
    ]


def render(host: tuple[DiskLine, ...], io: IoRecord) -> bytes:
    lines: list[str] = []
    for disk in host:
        counters = io.devices.get((disk.major, disk.minor))
        if counters is None or counters.idle:
            continue
        values = counters_for(counters)
        width = len(disk.counters)
        values = (values + [0] * width)[:width]
        fields = " ".join(str(max(0, value)) for value in values)
        lines.append(f"{disk.major:4d} {disk.minor:7d} {disk.name} {fields}\n")
    return "".join(lines).encode()
