"""/proc/pressure/{cpu,io,memory}: the cgroup's own PSI file (v2), copied as is."""

from __future__ import annotations


def render(cgroup_pressure: bytes) -> bytes:
    return cgroup_pressure
