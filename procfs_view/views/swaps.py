"""/proc/swaps: the header and, when the container has swap, one virtual line (host swap
devices are never shown, as in LXCFS)."""

from __future__ import annotations

HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


def render(total_kib: int, used_kib: int) -> bytes:
    if total_kib <= 0:
        return HEADER.encode()
    used = min(max(0, used_kib), total_kib)
    return f"{HEADER}{'none':<40}virtual\t\t{total_kib}\t\t{used}\t\t0\n".encode()
