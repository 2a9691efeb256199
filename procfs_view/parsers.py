"""Small pure parsers (and their inverse formatters) for cgroup and /proc file formats.

Every parser raises ``CgroupDataError`` naming the offending text when the content is not
of the documented shape, so the caller can fall back; none of them does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from procfs_view.errors import CgroupDataError

#: v1 ``memory.limit_in_bytes`` reports "no limit" as PAGE_COUNTER_MAX * PAGE_SIZE =
#: (LONG_MAX // PAGE_SIZE) * PAGE_SIZE = 2**63 - PAGE_SIZE: 9223372036854771712 with 4 KiB
#: pages, but *smaller* with bigger pages (9223372036854710272 with the 64 KiB pages of
#: RHEL ppc64le/aarch64 kernels). Anything at or above the value for the largest base page
#: Linux has (256 KiB) means unlimited; no real limit is within 256 KiB of 8 EiB.
V1_UNLIMITED_THRESHOLD = 2**63 - 2**18


#: What the kernel prints for an integer. Python's int() also takes "1_000", "+5" and
#: non-ASCII digits ("١٢"), none of which a cgroup or /proc file holds: they are garbage.
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)


def parse_int(text: str, what: str) -> int:
    """Parse one decimal integer (surrounding whitespace allowed)."""
    stripped = text.strip()
    try:
        if not _INTEGER.fullmatch(stripped):
            raise ValueError(stripped)
        return int(stripped, 10)
    except ValueError:  # also int()'s limit on digits (sys.get_int_max_str_digits)
        raise CgroupDataError(f"{what}: expected an integer, got {stripped[:40]!r}") from None


def parse_limit(text: str, what: str) -> int | None:
    """Parse a limit file: ``max`` (v2), ``-1`` (v1 CFS) or a huge v1 value mean None."""
    stripped = text.strip()
    if stripped == "max":
        return None
    return limit_value(parse_int(stripped, what))


def limit_value(value: int) -> int | None:
    """A limit in bytes, or None for the values that mean "no limit" (negative, or the v1
    "unlimited" near 2**63)."""
    if value < 0 or value >= V1_UNLIMITED_THRESHOLD:
        return None
    return value


#: ``key value`` lines as the kernel prints them: printable keys, one blank, an integer.
_FLAT_KEYED = re.compile(r"(?:[!-~]++ -?+[0-9]++\n)*+", re.ASCII)


def parse_flat_keyed(text: str, what: str) -> dict[str, int]:
    """Parse ``key value`` lines (memory.stat, cpu.stat). Lines that are not of that shape
    are skipped; a file with none at all is an error.

    A file exactly in the kernel's format (checked by one regex) is split in one go, which
    is several times faster than line by line; anything else takes the line-by-line path.
    """
    if _FLAT_KEYED.fullmatch(text):
        tokens = text.split()
        try:
            return dict(zip(tokens[::2], map(int, tokens[1::2]), strict=True))
        except ValueError:  # a value past int()'s digit limit: skip that line, below
            pass
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            values[parts[0]] = int(parts[1])
        except ValueError:
            continue
    if not values and text.strip():
        raise CgroupDataError(f"{what}: no 'key value' lines in {text[:40]!r}")
    return values


class KeyPicker:
    """Picks ``keys`` out of a ``key value`` file that is read over and over (memory.stat).

    The kernel prints such a file from a fixed list, so its key column is the same on every
    read: the positions of ``keys`` found in one full parse are reused while the key column
    is unchanged (one list comparison), and only the wanted values are converted. Any other
    file (another kernel, a fixture, garbage) is parsed as ``parse_flat_keyed`` does.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        # (key column, index in the token list of each wanted value or None): replaced as
        # one tuple, so a reader in another thread never pairs one file's column with
        # another's positions.
        self._memo: tuple[list[str], list[int | None]] = ([], [None] * len(self.keys))

    def pick(self, text: str, what: str) -> list[int | None]:
        """The value of each of ``keys`` in ``text`` (None where absent), as
        ``parse_flat_keyed(text, what)`` gives them.

        Raises:
            CgroupDataError: as ``parse_flat_keyed``.
        """
        if _FLAT_KEYED.fullmatch(text):
            tokens = text.split()
            column = tokens[0::2]
            known, positions = self._memo
            if column != known:
                where = {key: 2 * index + 1 for index, key in enumerate(column)}  # last wins
                positions = [where.get(key) for key in self.keys]
                self._memo = (column, positions)
            try:
                return [None if at is None else int(tokens[at]) for at in positions]
            except ValueError:  # a value past int()'s digit limit: parse_flat_keyed skips it
                pass
        values = parse_flat_keyed(text, what)
        return [values.get(key) for key in self.keys]


def parse_device(text: str, what: str) -> tuple[int, int]:
    """Parse ``MAJ:MIN``."""
    major, sep, minor = text.partition(":")
    if not sep:
        raise CgroupDataError(f"{what}: expected MAJ:MIN, got {text[:20]!r}")
    return parse_int(major, what), parse_int(minor, what)


def parse_nested_keyed(text: str, what: str) -> dict[tuple[int, int], dict[str, int]]:
    """Parse v2 ``io.stat``: ``8:0 rbytes=1 wbytes=2 rios=3 ...`` per device."""
    devices: dict[tuple[int, int], dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        device = parse_device(parts[0], what)
        counters = devices.setdefault(device, {})
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if not sep:
                continue
            try:
                counters[key] = int(value)
            except ValueError:
                continue
    return devices


def parse_blkio_recursive(text: str, what: str) -> dict[tuple[int, int], dict[str, int]]:
    """Parse a v1 ``blkio.*_recursive`` file: ``8:0 Read 12`` lines and a ``Total N`` line."""
    devices: dict[tuple[int, int], dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        device = parse_device(parts[0], what)
        devices.setdefault(device, {})[parts[1]] = parse_int(parts[2], what)
    return devices


def parse_cpu_list(text: str, what: str = "cpu list") -> tuple[int, ...]:
    """Parse a kernel CPU list such as ``0-3,8,10-11`` (cpuset.cpus, .../cpu/online)."""
    cpus: set[int] = set()
    for chunk in text.strip().split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        first, sep, last = chunk.partition("-")
        start = parse_int(first, what)
        end = parse_int(last, what) if sep else start
        if start < 0 or end < start or end - start > 65536:
            raise CgroupDataError(f"{what}: bad range {chunk!r}")
        cpus.update(range(start, end + 1))
    return tuple(sorted(cpus))


def format_cpu_list(cpus: Iterable[int]) -> str:
    """Inverse of ``parse_cpu_list``: the kernel's compact form (``0-3,8``)."""
    ordered = sorted(set(cpus))
    ranges: list[str] = []
    index = 0
    while index < len(ordered):
        start = ordered[index]
        while index + 1 < len(ordered) and ordered[index + 1] == ordered[index] + 1:
            index += 1
        end = ordered[index]
        ranges.append(str(start) if start == end else f"{start}-{end}")
        index += 1
    return ",".join(ranges)


#: ``cpuacct.usage_all`` exactly as the kernel prints it.
_USAGE_ALL = re.compile(r"cpu user system\n(?:[0-9]++ [0-9]++ [0-9]++\n)*+", re.ASCII)


def parse_usage_all(text: str, what: str) -> dict[int, tuple[int, int]]:
    """Parse v1 ``cpuacct.usage_all``: a ``cpu user system`` header, then one row per CPU
    with nanoseconds. A file in the kernel's exact format (one regex) is split in one go:
    it has a row per host CPU, hundreds on big hosts."""
    if _USAGE_ALL.fullmatch(text):
        numbers = list(map(int, text.split()[3:]))
        cpus, users, systems = numbers[0::3], numbers[1::3], numbers[2::3]
        return dict(zip(cpus, zip(users, systems, strict=True), strict=True))
    rows: dict[int, tuple[int, int]] = {}
    lines = text.splitlines()
    if not lines or lines[0].split()[:1] != ["cpu"]:
        raise CgroupDataError(f"{what}: missing 'cpu user system' header")
    for line in lines[1:]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise CgroupDataError(f"{what}: bad row {line[:40]!r}")
        rows[parse_int(parts[0], what)] = (parse_int(parts[1], what), parse_int(parts[2], what))
    return rows


def parse_usage_percpu(text: str, what: str) -> dict[int, int]:
    """Parse v1 ``cpuacct.usage_percpu``: nanoseconds for CPU 0, 1, ... on one line."""
    return {cpu: parse_int(value, what) for cpu, value in enumerate(text.split())}
