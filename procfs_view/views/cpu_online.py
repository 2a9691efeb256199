"""/sys/devices/system/cpu/online: what glibc's sysconf(_SC_NPROCESSORS_ONLN) counts."""

from __future__ import annotations

from procfs_view.parsers import format_cpu_list
from procfs_view.views.cpus import VisibleCpus


def render(cpus: VisibleCpus) -> bytes:
    """The cpuset as a kernel CPU list, or ``0-(N-1)`` when the CPU view renumbers."""
    shown = [cpus.shown_number(i) for i in range(cpus.count)]
    return f"{format_cpu_list(shown)}\n".encode()
