"""Whole-file reads for the request path: one ``open``/``read``.../``close`` on a str path,
or, through ``OpenFiles``, one ``pread`` on a descriptor kept open from an earlier read.

pathlib costs tens of microseconds per path built and per ``open`` (it re-parses the path
each time); a served file needs up to a dozen small files, so the hot path avoids it.
"""

from __future__ import annotations

import errno
import os
import resource
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable

from procfs_view.errors import CgroupDataError
from procfs_view.mountinfo import read_mountinfo

#: Reads stop here: no /proc or cgroup file we read is anywhere near it; garbage that is
#: bigger is cut off (and then fails to parse) instead of exhausting memory.
READ_LIMIT = 1 << 20
_CHUNK = 65536
#: First pread size: every cgroup file and most /proc files we read fit in one page.
_FIRST_PREAD = 4096


def _read_fd(fd: int, limit: int) -> bytes:
    """Read ``fd`` from its position to EOF (or ``limit`` bytes)."""
    data = os.read(fd, _CHUNK)
    if not data:
        return data
    chunks = [data]
    size = len(data)
    while size < limit:
        chunk = os.read(fd, min(_CHUNK, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)[:limit]


def _pread_all(fd: int, limit: int, one_record: bool) -> bytes:
    """Read ``fd`` from offset 0 to EOF (or ``limit`` bytes) without moving its position.

    Only for a file the kernel prints in one go (``one_record``) is a short first read the
    whole file; any other stops a read at the first record that does not fit the kernel's
    page-sized buffer (a 16-CPU cpuinfo comes three CPUs at a time), so only an empty read
    is its end."""
    data = os.pread(fd, min(_FIRST_PREAD, limit), 0)
    if not data or (one_record and len(data) < _FIRST_PREAD):
        return data
    chunks = [data]
    size = len(data)
    while size < limit:
        chunk = os.pread(fd, min(_CHUNK, limit - size), size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _open(path: str) -> int:
    # O_NONBLOCK: a FIFO (or tty) planted where a file belongs must not park the daemon
    # (and with it every container's reads) in open() or read(); regular, proc, sysfs and
    # cgroup files ignore the flag.
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)


def read_bytes(path: str, limit: int = READ_LIMIT) -> bytes:
    """The content of ``path``, read until EOF (or ``limit`` bytes).

    Raises:
        OSError: as ``os.open``/``os.read`` do (ENOENT, ESRCH, ENODEV, EACCES, ...).
    """
    fd = _open(path)
    try:
        return _read_fd(fd, limit)
    finally:
        os.close(fd)


def read_text(path: str, limit: int = READ_LIMIT, errors: str = "strict") -> str:
    """``read_bytes`` decoded as UTF-8.

    Raises:
        CgroupDataError: the content is not UTF-8 (with ``errors="strict"``); pass
            ``"surrogateescape"`` for text holding file names, which are bytes.
    """
    return decode(read_bytes(path, limit), path, errors)


def decode(data: bytes, path: str, errors: str = "strict") -> str:
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError:
        raise CgroupDataError(f"{path}: not UTF-8 text") from None


#: Filesystems whose files are generated afresh by every read at offset 0, and whose
#: descriptors fail (ENODEV, ESRCH) once what they show is gone: a kept descriptor can
#: never show stale content. A regular file could be replaced under a kept descriptor.
GENERATED_FILESYSTEMS = frozenset({"proc", "cgroup", "cgroup2", "sysfs"})
#: /proc files the kernel prints with one ``show`` call (``single_open``): a read at
#: offset 0 returns all of it or fills the buffer. cpuinfo (a record per CPU), diskstats
#: and swaps (per device), maps, mountinfo... are printed record by record and are not.
_ONE_RECORD_PROC_FILES = frozenset(
    {"meminfo", "stat", "uptime", "loadavg", "cgroup", "cpu", "io", "memory"}
)
#: The cgroup files printed record by record (a line per process or thread); every other
#: cgroup file, like every sysfs attribute, is printed in one go.
_RECORD_CGROUP_FILES = frozenset({"cgroup.procs", "cgroup.threads", "tasks"})


def _one_record(path: str, fstype: str) -> bool:
    """Whether a short first read of ``path`` (on a ``fstype`` filesystem) is all of it."""
    name = path.rpartition("/")[2]
    if fstype == "proc":
        return name in _ONE_RECORD_PROC_FILES
    if fstype == "sysfs":
        return True
    return name not in _RECORD_CGROUP_FILES


def filesystems_by_device(mountinfo: str = "/proc/self/mountinfo") -> dict[int, str]:
    """``st_dev`` -> filesystem type of every mount this process sees."""
    try:
        entries = read_mountinfo(mountinfo)
    except OSError:
        return {}
    return {os.makedev(*entry.device): entry.fstype for entry in entries}


#: Descriptors an ``OpenFiles`` keeps at most, by default. Each costs the kernel about
#: 4.3 KiB while open (the file and its seq_file page, measured on 6.18): 8192 is ~35 MiB.
DEFAULT_OPEN_FILES = 8192
#: A kept descriptor not read for this long is closed at a later read: the cgroups of
#: stopped containers do not pin kernel memory for long.
DEFAULT_IDLE_SECONDS = 60.0
#: Descriptors left to everything else in the process when sizing to RLIMIT_NOFILE.
_RESERVED_FDS = 256
_SWEEP_EVERY = 1024


#: Every pool in this process: they share one descriptor table, so running out empties all.
_POOLS: weakref.WeakSet[OpenFiles] = weakref.WeakSet()


class OpenFiles:
    """Re-reads files with one ``pread(fd, …, 0)`` on a descriptor kept from the first read,
    instead of ``open`` + ``read`` + ``read`` + ``close``: a fifth of the syscall cost.

    Only files of ``GENERATED_FILESYSTEMS`` are kept (proc, sysfs and cgroup files
    regenerate their content on every read at offset 0); anything else, fixture trees on
    tmpfs for instance, is read afresh every time. A kept descriptor that fails (a removed
    cgroup reads ENODEV, an exited process ESRCH, a FIFO ESPIPE) is closed and the path
    opened again, so a cgroup re-created under the same name is read correctly and a
    vanished one fails as an open would. At most ``capacity`` descriptors are kept (least
    recently read go first; never more than half of RLIMIT_NOFILE), ones idle for
    ``idle_seconds`` are closed at a later read, and every pool's are closed when the
    process runs out of descriptors (EMFILE/ENFILE), so keeping them never costs a read.
    """

    def __init__(
        self,
        capacity: int = DEFAULT_OPEN_FILES,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            capacity = min(capacity, max(0, (soft - _RESERVED_FDS) // 2))
        self.capacity = max(0, capacity)
        self.idle_seconds = idle_seconds
        self.clock = clock
        # path -> (descriptor, last read, whether a short first read is the whole file,
        # which open of this pool it came from)
        self._kept: OrderedDict[str, tuple[int, float, bool, int]] = OrderedDict()
        self._opens = 0
        self._filesystems: dict[int, str] = {}
        self._reads = 0
        _POOLS.add(self)

    def __len__(self) -> int:
        return len(self._kept)

    def read(self, path: str, limit: int = READ_LIMIT) -> bytes:
        """The content of ``path`` (as ``read_bytes``).

        Raises:
            OSError: as ``read_bytes`` does.
        """
        now = self.clock()
        self._reads += 1
        if self._reads % _SWEEP_EVERY == 0:
            self._sweep(now)
        kept = self._kept.get(path)
        if kept is not None:
            fd, _, one_record, generation = kept
            try:
                data = _pread_all(fd, limit, one_record)
            except OSError:
                self._forget(path)
            else:
                self._kept[path] = (fd, now, one_record, generation)
                self._kept.move_to_end(path)
                return data
        fd = self._open(path)
        try:
            data = _read_fd(fd, limit)
        except BaseException:
            os.close(fd)
            raise
        self._keep(path, fd, now)
        return data

    def close(self) -> None:
        """Close every kept descriptor (the service is being replaced or shut down)."""
        while self._kept:
            _, (fd, _, _, _) = self._kept.popitem()
            os.close(fd)

    def _open(self, path: str) -> int:
        try:
            return _open(path)
        except OSError as error:
            if error.errno not in (errno.EMFILE, errno.ENFILE) or not any(_POOLS):
                raise
        for pool in list(_POOLS):  # kept descriptors are what fills the table: give them back
            pool.close()
        return _open(path)

    def _keep(self, path: str, fd: int, now: float) -> None:
        fstype = self._fstype(fd) if self.capacity > 0 else ""
        if fstype not in GENERATED_FILESYSTEMS:
            os.close(fd)
            return
        self._opens += 1
        self._kept[path] = (fd, now, _one_record(path, fstype), self._opens)
        while len(self._kept) > self.capacity:
            _, (old, _, _, _) = self._kept.popitem(last=False)
            os.close(old)

    def _sweep(self, now: float) -> None:
        """Close descriptors not read for ``idle_seconds`` (the least recent come first)."""
        while self._kept:
            path, (fd, last, _, _) = next(iter(self._kept.items()))
            if now - last < self.idle_seconds:
                return
            del self._kept[path]
            os.close(fd)

    def _forget(self, path: str) -> None:
        fd, _, _, _ = self._kept.pop(path)
        os.close(fd)

    def kept_since(self, path: str) -> int | None:
        """Which open of this pool the descriptor kept for ``path`` came from (None: none
        kept). While it stays the same, every read of ``path`` since was of the file that
        open found: for ``/proc/<pid>/cgroup``, the same process (the kernel fails a read
        with ESRCH once it exits, and the descriptor is then replaced)."""
        kept = self._kept.get(path)
        return None if kept is None else kept[3]

    def _fstype(self, fd: int) -> str:
        """The filesystem ``fd`` is on ("" when mountinfo does not tell)."""
        device = os.fstat(fd).st_dev
        fstype = self._filesystems.get(device)
        if fstype is None:
            self._filesystems = filesystems_by_device()
            fstype = self._filesystems.setdefault(device, "")
        return fstype
