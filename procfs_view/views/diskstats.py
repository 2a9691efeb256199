"""/proc/diskstats with the cgroup's own I/O per device (v1 blkio and v2 io.stat).

Only devices the cgroup has done I/O on are listed (as in LXCFS). The host's field count
is kept (14, 18 with discards since Linux 4.18, 20 with flushes since 5.5; see
Documentation/admin-guide/iostats.rst). Fields the cgroup files do not provide (in-flight
I/Os, and on v2 the time fields) are 0.

The counters never go back for a cgroup (``advance``): v1's recursive counts lose a child's
I/O when the child cgroup is removed (systemd makes and removes scopes under a system
container all the time), and a monitoring agent takes every drop for a counter reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from procfs_view.cgroup.records import IoCounters, IoRecord
from procfs_view.host import DiskLine

SECTOR = 512
Device = tuple[int, int]
COUNTERS = 17
IN_PROGRESS = 8  # the one gauge among the fields: 0 here, never carried forward
NO_OFFSET = (0,) * COUNTERS


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


@dataclass(frozen=True)
class DiskState:
    """What one cgroup was last shown, per device, to continue from on its next read.

    ``identity`` is the cgroup directory's inode: a cgroup made again at the same path (a
    restarted LXC container) starts from its own counts, not from its predecessor's.
    ``offsets`` is what earlier drops of the kernel's counts added, per device and field."""

    identity: int
    shown: Mapping[Device, tuple[int, ...]]
    offsets: Mapping[Device, tuple[int, ...]]


def advance(
    host: tuple[DiskLine, ...], io: IoRecord, identity: int, previous: DiskState | None
) -> tuple[bytes, DiskState]:
    """The file for this read and the state for the next one.

    Each field is the kernel's count plus the device's offset; where that would be below
    what was last shown, the shortfall joins the offset, so the field holds its value and
    later I/O counts on from there (a plain maximum would freeze it until the kernel's count
    caught up). A device shown before keeps its line when its counts drop to nothing."""
    if previous is not None and previous.identity != identity:
        previous = None
    last_shown = previous.shown if previous is not None else {}
    last_offsets = previous.offsets if previous is not None else {}
    lines: list[str] = []
    shown: dict[Device, tuple[int, ...]] = {}
    offsets: dict[Device, tuple[int, ...]] = {}
    for disk in host:
        device = (disk.major, disk.minor)
        counters = io.devices.get(device)
        last = last_shown.get(device)
        if last is None and (counters is None or counters.idle):
            continue
        offset = last_offsets.get(device, NO_OFFSET)
        raw = counters_for(counters) if counters is not None else [0] * COUNTERS
        values = [max(0, value) + add for value, add in zip(raw, offset, strict=True)]
        if last is not None and values != list(last):
            grown = list(offset)
            for field, (value, before) in enumerate(zip(values, last, strict=True)):
                if value < before and field != IN_PROGRESS:
                    grown[field] += before - value
                    values[field] = before
            offset = tuple(grown)
        shown[device] = tuple(values)
        if offset != NO_OFFSET:
            offsets[device] = offset
        width = len(disk.counters)
        fields = " ".join(map(str, (values + [0] * width)[:width]))
        lines.append(f"{disk.major:4d} {disk.minor:7d} {disk.name} {fields}\n")
    return "".join(lines).encode(), DiskState(identity, shown, offsets)


def render(host: tuple[DiskLine, ...], io: IoRecord) -> bytes:
    """The file for a cgroup read for the first time."""
    return advance(host, io, 0, None)[0]
