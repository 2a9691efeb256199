"""/proc/meminfo as seen from a memory cgroup.

Formulas follow LXCFS (src/proc_fuse.c, proc_meminfo_read) with its known defects fixed:
values are computed in signed arithmetic and clamped, so MemFree/SwapFree never wrap to
~2^64 when usage exceeds the limit (lxcfs#115, #695); AnonHugePages and Mapped come from
exact memory.stat keys (LXCFS's prefix match left them 0); and host-only lines are clamped
to MemTotal so no line claims more memory than the container has.
"""

from __future__ import annotations

from procfs_view.cgroup.records import MemoryRecord, MemoryStat
from procfs_view.host import HostMeminfo, MeminfoKeys

KIB = 1024

#: Lines whose unit is not kB or that count pages, left as the host has them.
_HOST_COUNTS = frozenset(
    {"HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp", "Hugepagesize"}
)


def swap_figures(host: HostMeminfo, memory: MemoryRecord, swap_enabled: bool) -> tuple[int, int]:
    """(SwapTotal, SwapUsed) in KiB for the cgroup; shared with the swaps view.

    No swap accounting or ``--disable-swap`` shows no swap, as LXCFS does. Swappiness 0
    means the cgroup cannot swap out more, so total = what is already used.
    """
    swap = memory.swap
    host_total = max(0, host.kb("SwapTotal"))
    if not swap_enabled or swap is None:
        return 0, 0
    total = host_total if swap.limit is None else min(host_total, swap.limit // KIB)
    used = min(swap.usage // KIB, host_total)
    if swap.swappiness == 0:
        total = used
    return total, min(used, total)


def compute(host: HostMeminfo, memory: MemoryRecord, swap_enabled: bool) -> dict[str, int]:
    """The rewritten meminfo values in KiB, keyed by meminfo name."""
    stat = memory.stat
    host_total = max(0, host.kb("MemTotal"))
    total = host_total if memory.limit is None else min(host_total, memory.limit // KIB)
    # A MemTotal of 0 made procps divide by zero (lxcfs#389): keep at least one page.
    total = max(total, min(host_total, 4))

    def kb(value: int) -> int:
        """Bytes to KiB within [0, MemTotal] (comparisons: half the cost of min/max, and
        this runs ~20 times per render)."""
        value //= KIB
        return 0 if value < 0 else total if value > total else value

    free = total - kb(memory.usage)
    reclaimable = stat.active_file + stat.inactive_file + (stat.slab_reclaimable or 0)
    available = min(total, free + kb(reclaimable))
    swap_total, swap_used = swap_figures(host, memory, swap_enabled)
    values = {
        "MemTotal": total,
        "MemFree": free,
        "MemAvailable": available,
        "Buffers": 0,
        # Within what is in use: memory.stat lags memory.current (the kernel folds its
        # per-CPU counters into it every 2 s), so right after files are deleted, or with
        # usage past the limit, file pages could exceed it and free's used go negative.
        "Cached": min(kb(stat.file), total - free),
        "SwapCached": 0,
        "Active": kb(stat.active_anon + stat.active_file),
        "Inactive": kb(stat.inactive_anon + stat.inactive_file),
        "Active(anon)": kb(stat.active_anon),
        "Inactive(anon)": kb(stat.inactive_anon),
        "Active(file)": kb(stat.active_file),
        "Inactive(file)": kb(stat.inactive_file),
        "Unevictable": kb(stat.unevictable),
        "SwapTotal": swap_total,
        "SwapFree": swap_total - swap_used,
        "Dirty": kb(stat.dirty),
        "Writeback": kb(stat.writeback),
        "AnonPages": kb(stat.anon or (stat.active_anon + stat.inactive_anon - stat.shmem)),
        "Mapped": kb(stat.mapped),
        "Shmem": kb(stat.shmem),
        "AnonHugePages": kb(stat.anon_thp),
    }
    # v1's memory.stat has no slab keys: the cgroup's slab is then unknown, and showing the
    # host's would inflate free's buff/cache (Cached + SReclaimable) past MemTotal.
    # buff/cache (Buffers + Cached + SReclaimable) within what is in use, as above.
    reclaimable_slab = min(kb(stat.slab_reclaimable or 0), total - free - values["Cached"])
    unreclaimable_slab = kb(stat.slab_unreclaimable or 0)
    values["KReclaimable"] = reclaimable_slab
    values["SReclaimable"] = reclaimable_slab
    values["SUnreclaim"] = unreclaimable_slab
    values["Slab"] = min(total, reclaimable_slab + unreclaimable_slab)
    # Mlocked pages are a subset of the unevictable ones; neither cgroup version reports
    # them, so bound the host figure by the cgroup's Unevictable.
    values["Mlocked"] = min(max(0, host.kb("Mlocked")), values["Unevictable"])
    for key, value in (
        ("ShmemHugePages", stat.shmem_thp),
        ("KernelStack", stat.kernel_stack),
        ("PageTables", stat.pagetables),
        ("Percpu", stat.percpu),
    ):
        if value is not None:
            values[key] = kb(value)
    return values


def format_line(key: str, value: int, unit: str) -> str:
    """The kernel's layout: name and colon padded to 16 columns, value right-aligned in 8,
    and always a blank between them (``HugePages_Total:`` fills 16 columns; an 8-digit
    value would otherwise fuse with it and break every ``line.split()`` parser)."""
    suffix = f" {unit}" if unit else ""
    line = f"{key + ':':<16}{value:>8}"
    if not line[len(key) + 1 :][:1].isspace():
        line = f"{key}: {value}"
    return f"{line}{suffix}\n"


#: Every key ``compute`` may rewrite: what it returns for a cgroup whose memory.stat has
#: every optional key (derived from ``compute`` itself, so the two cannot drift apart).
_DERIVED = frozenset(
    compute(
        HostMeminfo.from_entries(()),
        MemoryRecord(
            None,
            0,
            MemoryStat(
                slab_reclaimable=0,
                slab_unreclaimable=0,
                shmem_thp=0,
                kernel_stack=0,
                pagetables=0,
                percpu=0,
            ),
        ),
        True,
    )
)


class _Layout:
    """How to print a host meminfo with this key column: a ``%`` template in host line
    order with a slot for each line. Built once per key column (once per host: the kernel
    prints the same keys every time), so a render is one ``%`` and no per-line strings.

    ``clamped`` are the slots bounded by MemTotal, ``derived`` those whose value
    ``compute`` returns. A slot whose key fills the 16 columns is printed ``%s`` and listed
    with its unit, for ``format_line`` to print (its value may need the extra blank): in
    ``wide`` when a render may change its value, else in ``wide_host``.
    """

    def __init__(self, keys: MeminfoKeys) -> None:
        parts: list[str] = []
        clamped: list[int] = []
        derived: list[tuple[int, str]] = []
        wide: list[tuple[int, str, str]] = []
        wide_host: list[tuple[int, str, str]] = []
        for slot, (key, unit) in enumerate(zip(keys.keys, keys.units, strict=True)):
            clamp = unit == "kB" and key not in _HOST_COUNTS
            if clamp:
                clamped.append(slot)
            if key in _DERIVED:
                derived.append((slot, key))
            if len(key) + 1 >= 16:
                parts.append("%s")
                (wide if clamp or key in _DERIVED else wide_host).append((slot, key, unit))
            else:
                label = _escape(f"{key + ':':<16}")
                suffix = _escape(f" {unit}" if unit else "")
                parts.append(f"{label}%8d{suffix}\n")
        self.keys = keys
        self.template = "".join(parts)
        self.clamped = tuple(clamped)
        self.derived = tuple(derived)
        self.wide = tuple(wide)
        self.wide_host = tuple(wide_host)


class _Snapshot:
    """A host snapshot ready to print: its values (floored at 0 where clamped) and the
    clamped slots by value, largest first, so a render lowers those above MemTotal and
    stops at the first that fits."""

    def __init__(self, host: HostMeminfo, layout: _Layout) -> None:
        arguments: list[int | str] = list(host.values)
        values = list(host.values)
        for slot in layout.clamped:
            if values[slot] < 0:
                arguments[slot] = values[slot] = 0
        for slot, key, unit in layout.wide_host:
            arguments[slot] = format_line(key, values[slot], unit)
        self.host = host
        self.layout = layout
        self.arguments = arguments
        self.clamp_order = sorted(layout.clamped, key=values.__getitem__, reverse=True)
        self.values = values


def _escape(text: str) -> str:
    return text.replace("%", "%%")


_last_snapshot: _Snapshot | None = None


def _snapshot(host: HostMeminfo) -> _Snapshot:
    """``host`` ready to print, memoized for the last snapshot (the service shares one
    parsed host meminfo between all containers for its cache TTL), its layout for as long
    as the host's key column stays the same."""
    global _last_snapshot
    last = _last_snapshot
    if last is not None and last.host is host:
        return last
    layout = last.layout if last is not None and last.layout.keys == host.keys else None
    snapshot = _last_snapshot = _Snapshot(host, layout or _Layout(host.keys))
    return snapshot


def render(host: HostMeminfo, memory: MemoryRecord, swap_enabled: bool = True) -> bytes:
    """Every host line in host order; cgroup-derived ones rewritten, others clamped."""
    values = compute(host, memory, swap_enabled)
    total = values["MemTotal"]
    snapshot = _snapshot(host)
    layout = snapshot.layout
    arguments = snapshot.arguments.copy()
    host_values = snapshot.values
    for slot in snapshot.clamp_order:
        if host_values[slot] <= total:
            break
        arguments[slot] = total
    for slot, key in layout.derived:
        value = values.get(key)
        if value is not None:
            arguments[slot] = value
    for slot, key, unit in layout.wide:
        arguments[slot] = format_line(key, int(arguments[slot]), unit)
    return (layout.template % tuple(arguments)).encode()
