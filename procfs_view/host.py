"""Read the host's /proc and /sys into typed records, from injectable roots.

The pure ``parse_*`` functions take file text and raise ``CgroupDataError`` (the
"unparsable input" error of this package) on a shape they do not know; ``HostReader`` does
the I/O. psutil is not used for these: it reads a process-global ``PROCFS_PATH``, so it
cannot be pointed at a per-test fixture tree, and it does not keep the raw lines the views
must copy through unchanged.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from procfs_view.cache import Clock, TtlCache
from procfs_view.errors import CgroupDataError, ProcessGone
from procfs_view.fileio import decode, read_bytes
from procfs_view.parsers import parse_cpu_list


class MeminfoEntry(NamedTuple):
    """One ``Key:   value [kB]`` line of /proc/meminfo; ``unit`` is ``kB`` or empty."""

    key: str
    value: int
    unit: str


@dataclass(frozen=True)
class MeminfoKeys:
    """The key column of a host meminfo: each line's key and unit, in line order. The
    kernel prints /proc/meminfo from a fixed list, so every snapshot of a host shares one,
    and what is built from it (the meminfo view's template) is built once."""

    keys: tuple[str, ...]
    units: tuple[str, ...]

    @cached_property
    def first(self) -> dict[str, int]:
        """The line index of each key's first line."""
        first: dict[str, int] = {}
        for index, key in enumerate(self.keys):
            first.setdefault(key, index)
        return first


@dataclass(frozen=True)
class HostMeminfo:
    """A parsed /proc/meminfo: the value of each line of ``keys``, in line order."""

    keys: MeminfoKeys
    values: tuple[int, ...]

    @classmethod
    def from_entries(cls, entries: Sequence[MeminfoEntry]) -> HostMeminfo:
        keys = MeminfoKeys(tuple(e.key for e in entries), tuple(e.unit for e in entries))
        return cls(keys, tuple(e.value for e in entries))

    @property
    def entries(self) -> tuple[MeminfoEntry, ...]:
        return tuple(map(MeminfoEntry, self.keys.keys, self.values, self.keys.units))

    def kb(self, key: str, default: int = 0) -> int:
        """The value of the first ``key`` line."""
        index = self.keys.first.get(key)
        return default if index is None else self.values[index]


#: /proc/meminfo exactly as the kernel prints it, line by line: a key (printable ASCII, no
#: colon), a colon, blanks, digits, then `` kB`` or nothing.
_KERNEL_MEMINFO = re.compile(r"(?:[!-9;-~]++: *+[0-9]++(?: kB)?+\n)*+", re.ASCII)
#: What changes between two snapshots of one host: the padding and digits after each colon.
_MEMINFO_VALUE = re.compile(r": *+([0-9]++)", re.ASCII)

#: (the text around the values of the last kernel-format meminfo parsed, its key column):
#: replaced as one tuple, so a reader in another thread never pairs the two wrongly.
_meminfo_memo: tuple[list[str] | None, MeminfoKeys] = (None, MeminfoKeys((), ()))


def parse_meminfo(text: str) -> HostMeminfo:
    """Split each line on its first ``:`` (some kernels omit the space after it).

    A host's meminfo is parsed every cache TTL and after every idle spell, so the kernel's
    own format takes a short cut: once one such text was parsed line by line, a text that
    differs from it only in the padding and digits after each colon (one regex split and a
    list comparison) has the same key column, and only its values are converted.
    """
    global _meminfo_memo
    shape, keys = _meminfo_memo
    pieces = _MEMINFO_VALUE.split(text)
    if pieces[0::2] == shape:
        try:
            return HostMeminfo(keys, tuple(map(int, pieces[1::2])))
        except ValueError:  # a value past int()'s digit limit: the line parser skips it
            pass
    info = _parse_meminfo_lines(text)
    if _KERNEL_MEMINFO.fullmatch(text):
        # Each line is one split piece and one value: the same text around new values is
        # still the kernel's format, with these keys in this order.
        _meminfo_memo = (pieces[0::2], info.keys)
    return info


def _parse_meminfo_lines(text: str) -> HostMeminfo:
    entries: list[MeminfoEntry] = []
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            value = int(parts[0])
        except ValueError:
            continue
        entries.append(MeminfoEntry(key.strip(), value, parts[1] if len(parts) > 1 else ""))
    if not any(entry.key == "MemTotal" for entry in entries):
        raise CgroupDataError("meminfo: no MemTotal line")
    return HostMeminfo.from_entries(entries)


class CpuLine(NamedTuple):
    """A ``cpu``/``cpuN`` line of /proc/stat: the name (``cpu`` or ``cpu3``) and its tick
    counters (user nice system idle iowait irq softirq steal guest guest_nice; older kernels
    have fewer). A tuple, not a frozen dataclass: one is built per host CPU on every read
    (0.1 against 0.8 us each), and hosts have hundreds."""

    name: str
    ticks: tuple[int, ...]

    @property
    def number(self) -> int | None:
        suffix = self.name[3:]
        return int(suffix) if suffix else None


class HostStat:
    """/proc/stat: the aggregate line, per-CPU lines, and every other line verbatim.

    The host file is parsed on every /proc/stat read (it is never cached, see
    ``CachedHostReader``), but a container is shown only its visible CPUs: so a per-CPU
    line is turned into numbers when it is first looked up. On a 256-CPU host converting
    every line took ~0.7 ms of each read for a container that sees 4 CPUs (a cpuset, or
    the CPU view). A line whose numbers are garbage raises ``CgroupDataError`` then."""

    def __init__(
        self,
        total: CpuLine,
        per_cpu: Sequence[CpuLine | str],
        other_lines: tuple[str, ...],
        numbers: Sequence[int | None] | None = None,
    ) -> None:
        """``per_cpu`` as records, or as text lines with their CPU ``numbers`` (as
        ``parse_stat`` passes them, having checked their names)."""
        if numbers is None:
            numbers = [row.number for row in per_cpu if isinstance(row, CpuLine)]
            if len(numbers) != len(per_cpu):
                raise ValueError("per-CPU lines given as text need their numbers")
        self.total = total
        self.other_lines = other_lines
        self._rows = list(per_cpu)
        self._numbers = list(numbers)
        self._index = _first_positions(self._numbers)

    @property
    def cpu_count(self) -> int:
        """How many per-CPU lines the host file has."""
        return len(self._rows)

    @property
    def cpu_numbers(self) -> tuple[int | None, ...]:
        """The number of each per-CPU line, in file order."""
        return tuple(self._numbers)

    def cpu(self, number: int) -> CpuLine | None:
        """CPU ``number``'s line (the first of that number), None if the host has none; an
        index, not a scan (one lookup per visible CPU: a scan each time was quadratic, 3 ms
        per read on a 128-CPU host).

        Raises:
            CgroupDataError: the line's counters are not numbers, or too few.
        """
        position = self._index.get(number)
        return None if position is None else self._line(position)

    def counter_sums(self, numbers: Sequence[int], fields: int) -> list[int | None]:
        """For each CPU in ``numbers``, the sum of its line's first ``fields`` counters
        (None: the host has no such line). When most lines are wanted, the kernel's
        uniform lines are converted in one go rather than line by line (a 256-CPU host:
        ~0.6 ms line by line).

        Raises:
            CgroupDataError: a wanted line's counters are not numbers, or too few.
        """
        if fields > 0 and len(numbers) >= _BULK_MIN and len(numbers) * 4 >= len(self._rows):
            sums = self._all_counter_sums(fields)
            if sums is not None:
                index = self._index
                return [None if (at := index.get(n)) is None else sums[at] for n in numbers]
        result: list[int | None] = []
        for number in numbers:
            line = self.cpu(number)
            result.append(None if line is None else sum(line.ticks[:fields]))
        return result

    def _all_counter_sums(self, fields: int) -> list[int] | None:
        """``counter_sums`` of every line, or None unless every line is unconverted text with
        the aggregate line's number of counters (then ``cpu`` says what is wrong)."""
        rows = self._rows
        width = len(self.total.ticks)
        texts = [row for row in rows if isinstance(row, str)]
        if len(texts) != len(rows):
            return None
        tokens = " ".join(texts).split()
        if len(tokens) != len(rows) * (width + 1):
            return None
        # Drop the names. Had any line more or fewer counters, some name would be left
        # (every row has exactly one, and names are never numbers) and int() would refuse.
        del tokens[:: width + 1]
        try:
            values = list(map(int, tokens))
        except ValueError:
            return None
        columns = (values[field::width] for field in range(min(fields, width)))
        return list(map(sum, zip(*columns, strict=True)))

    @property
    def per_cpu(self) -> tuple[CpuLine, ...]:
        """Every per-CPU line, in file order (all converted)."""
        return tuple(self._line(position) for position in range(len(self._rows)))

    def _line(self, position: int) -> CpuLine:
        row = self._rows[position]
        if isinstance(row, str):
            row = self._rows[position] = _cpu_line(row)
        return row


#: From how many wanted lines on the one-go conversion pays (measured: 3 µs slower for 1-2
#: lines, even at 4, ahead from 8).
_BULK_MIN = 8


def _first_positions(numbers: Sequence[int | None]) -> dict[int, int]:
    index: dict[int, int] = {}
    for position, number in enumerate(numbers):
        if number is not None:
            index.setdefault(number, position)
    return index


def _cpu_line(line: str) -> CpuLine:
    """A ``cpu``/``cpuN`` line of /proc/stat as numbers."""
    parts = line.split()
    try:
        ticks = tuple(map(int, parts[1:]))
    except ValueError:
        raise CgroupDataError(f"stat: bad cpu line {line[:40]!r}") from None
    if len(ticks) < 4:
        raise CgroupDataError(f"stat: too few fields in {line[:40]!r}")
    return CpuLine(parts[0], ticks)


def parse_stat(text: str) -> HostStat:
    """/proc/stat. The aggregate line is converted and every ``cpu`` line's name checked
    here; per-CPU counters when ``HostStat`` is asked for them."""
    total: CpuLine | None = None
    rows: list[str] = []
    numbers: list[int] = []
    other: list[str] = []
    for line in text.splitlines():
        # Only cpu lines are split: the intr line alone holds thousands of numbers (and is
        # not copied by an lstrip either).
        if line.startswith("cpu") or (line[:1].isspace() and line.lstrip().startswith("cpu")):
            name = line.split(None, 1)[0]
            if name == "cpu":
                total = _cpu_line(line)
                continue
            suffix = name[3:]
            if not (suffix.isdigit() and suffix.isascii()):  # int() refuses "²"
                raise CgroupDataError(f"stat: bad cpu line {line[:40]!r}")
            rows.append(line)
            numbers.append(int(suffix))
        elif line:
            other.append(line)
    if total is None:
        raise CgroupDataError("stat: no aggregate cpu line")
    return HostStat(total, rows, tuple(other), numbers)


@dataclass(frozen=True)
class DiskLine:
    """A /proc/diskstats line: device and its counters (14 fields before 4.18, 18 with
    discards since 4.18, 20 with flushes since 5.5; see Documentation/admin-guide/iostats.rst)."""

    major: int
    minor: int
    name: str
    counters: tuple[int, ...]


class BusyDevice(NamedTuple):
    """A block device the host has done I/O on, and where else its I/O is counted:
    ``parents`` the devices it goes on to (a partition's disk, a stacked device's members:
    device mapper, md), ``holders`` the devices it comes from (a member of a stacked
    device, e.g. a request-based multipath path, gets its holder's requests), and
    ``elsewhere`` whether it is counted on a device of another kind (a loop device's I/O
    is re-issued to the disk holding its backing file)."""

    name: str
    parents: tuple[tuple[int, int], ...] = ()
    holders: tuple[tuple[int, int], ...] = ()
    elsewhere: bool = False


LOOP_MAJOR = 7


def _device_number(block_dir: Path) -> tuple[int, int]:
    major, minor = block_dir.joinpath("dev").read_text().split(":")
    return int(major), int(minor)


def _linked_devices(directory: Path) -> tuple[tuple[int, int], ...]:
    """The devices a sysfs ``slaves/`` or ``holders/`` directory links to (none if absent)."""
    if not directory.is_dir():
        return ()
    return tuple(_device_number(link.resolve()) for link in directory.iterdir())


def parse_diskstats(text: str) -> tuple[DiskLine, ...]:
    lines: list[DiskLine] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        try:
            lines.append(
                DiskLine(int(parts[0]), int(parts[1]), parts[2], tuple(int(p) for p in parts[3:]))
            )
        except ValueError:
            raise CgroupDataError(f"diskstats: bad line {line[:40]!r}") from None
    return tuple(lines)


def parse_uptime(text: str) -> tuple[float, float]:
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        raise CgroupDataError(f"uptime: unexpected {text[:40]!r}") from None


def parse_start_ticks(stat_text: str) -> int:
    """Field 22 (starttime, clock ticks after boot) of /proc/<pid>/stat. The command name
    (field 2) may hold spaces and parentheses, so count from the last ``)``."""
    _, sep, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 20:
        raise CgroupDataError(f"pid stat: unexpected {stat_text[:60]!r}")
    try:
        return int(fields[19])
    except ValueError:
        raise CgroupDataError(f"pid stat: bad starttime {fields[19]!r}") from None


@dataclass(frozen=True)
class HostReader:
    """Reads host files below injectable roots (``/proc`` and ``/sys`` by default)."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    read_file: Callable[[str], bytes] = field(default=read_bytes, compare=False, repr=False)

    def read_proc(self, relative: str) -> str:
        where = f"{self.proc}/{relative}"
        return decode(self.read_file(where), where)

    def meminfo(self) -> HostMeminfo:
        return parse_meminfo(self.read_proc("meminfo"))

    def cpuinfo(self) -> str:
        return self.read_proc("cpuinfo")

    def stat(self) -> HostStat:
        return parse_stat(self.read_proc("stat"))

    def uptime(self) -> tuple[float, float]:
        return parse_uptime(self.read_proc("uptime"))

    def diskstats(self) -> tuple[DiskLine, ...]:
        return parse_diskstats(self.read_proc("diskstats"))

    def busy_devices(self) -> dict[tuple[int, int], BusyDevice]:
        """The devices with completed reads or writes in /proc/diskstats, with where else
        their I/O is counted (``/sys/dev/block/M:m``: ``partition`` means the parent
        directory's disk, ``slaves/`` and ``holders/`` the devices a stacked device is made
        of and is part of). Removable devices (a CD drive udev probed at boot) are left
        out: a container's own reads of them are not what its diskstats is for. A device
        sysfs does not describe (removed meanwhile, a fixture tree) is a disk of its own."""
        busy: dict[tuple[int, int], BusyDevice] = {}
        for disk in self.diskstats():
            if not (disk.counters[0] or disk.counters[4]):
                continue
            block = self.sys / "dev" / "block" / f"{disk.major}:{disk.minor}"
            device = BusyDevice(disk.name, elsewhere=disk.major == LOOP_MAJOR)
            try:
                if block.joinpath("removable").read_text().strip() == "1":
                    continue
            except OSError:
                pass
            try:
                if block.joinpath("partition").exists():
                    device = device._replace(parents=(_device_number(block.resolve().parent),))
                else:
                    device = device._replace(
                        parents=_linked_devices(block / "slaves"),
                        holders=_linked_devices(block / "holders"),
                    )
            except (OSError, ValueError):
                pass
            busy[(disk.major, disk.minor)] = device
        return busy

    def online_cpus(self) -> tuple[int, ...]:
        """Host CPUs online; falls back to the per-CPU lines of /proc/stat."""
        try:
            where = f"{self.sys}/devices/system/cpu/online"
            return parse_cpu_list(decode(self.read_file(where), where))
        except (OSError, CgroupDataError):
            return tuple(n for n in self.stat().cpu_numbers if n is not None)

    def process_start_seconds(self, pid: int) -> float:
        """Seconds after boot at which ``pid`` started."""
        where = f"{self.proc}/{pid}/stat"
        try:
            # The name in it may be any bytes (the kernel prints it raw).
            text = decode(self.read_file(where), where, "surrogateescape")
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ESRCH):
                raise ProcessGone(pid) from None
            raise
        return parse_start_ticks(text) / clock_ticks()

    def pid_namespace(self, pid: int) -> int:
        return pid_namespace(self.proc, pid)


#: /proc/cpuinfo changes only on CPU hotplug (and in its "cpu MHz" lines), and is costly
#: to produce on big hosts (the kernel samples every CPU's frequency): keep it at least 1 s.
CPUINFO_MIN_TTL = 1.0


class CachedHostReader:
    """A ``HostReader`` whose host-wide inputs are reused by every container for a short
    while: parsed meminfo, diskstats and the online CPUs for up to ``ttl`` seconds,
    cpuinfo for up to ``max(ttl, CPUINFO_MIN_TTL)``; ``ttl`` 0 caches nothing.

    /proc/stat and /proc/uptime are always read afresh: the stat view's per-cgroup counters
    advance by the host's elapsed time between two reads, which a cached host file would
    report as zero (and drop the cgroup's CPU time of that interval).
    """

    def __init__(self, reader: HostReader, ttl: float, clock: Clock = time.monotonic) -> None:
        self.reader = reader
        self.proc = reader.proc
        self.sys = reader.sys
        self._cache: TtlCache[str, object] = TtlCache(ttl, capacity=16, clock=clock)
        cpuinfo_ttl = max(ttl, CPUINFO_MIN_TTL) if ttl > 0 else 0.0
        self._cpuinfo: TtlCache[str, str] = TtlCache(cpuinfo_ttl, capacity=1, clock=clock)

    def clear(self) -> None:
        self._cache.clear()
        self._cpuinfo.clear()

    def read_proc(self, relative: str) -> str:
        return self.reader.read_proc(relative)

    def meminfo(self) -> HostMeminfo:
        cached = self._cache.get("meminfo")
        if isinstance(cached, HostMeminfo):
            return cached
        value = self.reader.meminfo()
        self._cache.put("meminfo", value)
        return value

    def cpuinfo(self) -> str:
        return self._cpuinfo.get_or_compute("cpuinfo", self.reader.cpuinfo)

    def stat(self) -> HostStat:
        return self.reader.stat()

    def uptime(self) -> tuple[float, float]:
        return self.reader.uptime()

    def diskstats(self) -> tuple[DiskLine, ...]:
        cached = self._cache.get("diskstats")
        if isinstance(cached, tuple):
            return cached
        value = self.reader.diskstats()
        self._cache.put("diskstats", value)
        return value

    def busy_devices(self) -> dict[tuple[int, int], BusyDevice]:
        return self.reader.busy_devices()

    def online_cpus(self) -> tuple[int, ...]:
        cached = self._cache.get("online")
        if isinstance(cached, tuple):
            return cached
        value = self.reader.online_cpus()
        self._cache.put("online", value)
        return value

    def process_start_seconds(self, pid: int) -> float:
        return self.reader.process_start_seconds(pid)

    def pid_namespace(self, pid: int) -> int:
        return self.reader.pid_namespace(pid)


def pid_namespace(proc_root: Path, pid: int | str) -> int:
    """Inode of the pid namespace of ``pid`` (``self`` for this process); equal inodes mean
    the same namespace. Read from the link's text (``pid:[4026531836]``), which costs half
    a ``stat`` of it (that resolves the namespace file); a fixture's plain file is stat'ed.

    Raises:
        ProcessGone: the process does not exist (it may have exited).
    """
    where = f"{proc_root}/{pid}/ns/pid"
    try:
        try:
            link = os.readlink(where)
        except OSError as error:
            if error.errno != errno.EINVAL:  # EINVAL: not a link (fixture trees)
                raise
            return os.stat(where).st_ino
        if link.startswith("pid:[") and link.endswith("]") and link[5:-1].isdigit():
            return int(link[5:-1])
        return os.stat(where).st_ino
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(int(pid) if str(pid).isdigit() else -1) from None


def clock_ticks() -> int:
    """USER_HZ: the unit of /proc/stat and /proc/<pid>/stat times (100 on Linux)."""
    return os.sysconf("SC_CLK_TCK")
