"""/proc/swaps: the header and, when the container has swap, one virtual line (host swap
devices are never shown, as in LXCFS)."""

from __future__ import annotations

HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


def render(total_kib: int, used_kib: int) -> bytes:
    if total_kib <= 0:
        return HEADER.encode()
    used = min(max(0, used_kib), total_kib)
    # The kernel's swap_show() layout: name padded to 40 columns, then an extra tab after
    # numbers under 10000000 so the columns line up.
    size_pad = "\t" if total_kib < 10000000 else ""
    used_pad = "\t" if used < 10000000 else ""
    return f"{HEADER}{'none':<40}virtual\t{total_kib}\t{size_pad}{used}\t{used_pad}0\n".encode()
