"""Who is the container: the init of a caller's pid namespace, as seen from the host.

We read ``/proc/<pid>/ns/pid`` (the namespace's inode) and ``NSpid`` in
``/proc/<pid>/status`` (the pid in each nested namespace, innermost last): the process
whose innermost pid is 1 in the caller's namespace is that namespace's init. This needs no
fork or setns (LXCFS forks a child into the namespace and has it send SCM_CREDENTIALS for
pid 1), which keeps it cheap enough for a request path. The answer is cached per namespace
inode and re-validated by the init's start time, so a recycled pid is never mistaken for
the old init.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from procfs_view.errors import CgroupDataError, ProcessGone, ProcfsViewError, ServeHost
from procfs_view.fileio import read_text
from procfs_view.host import parse_start_ticks, pid_namespace


def parse_nspid(status_text: str) -> tuple[int, ...]:
    """The ``NSpid:`` line of /proc/<pid>/status (Linux 4.1+)."""
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            try:
                return tuple(int(p) for p in line.split()[1:])
            except ValueError:
                break
    raise CgroupDataError("status: no NSpid line")


def _status_number(status_text: str, key: str) -> int:
    """The number on the ``key:`` line of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith(key):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                break
    raise CgroupDataError(f"status: no {key} line")


def parse_ppid(status_text: str) -> int:
    """The ``PPid:`` line of /proc/<pid>/status (0 for a process without a parent in
    the reader's pid namespace)."""
    return _status_number(status_text, "PPid:")


def parse_tgid(status_text: str) -> int:
    """The ``Tgid:`` line of /proc/<tid>/status: the process a thread belongs to."""
    return _status_number(status_text, "Tgid:")


#: Scans of /proc for a new pid namespace's init allowed at once; one more each second.
SCAN_BURST = 8


@dataclass
class _CachedInit:
    pid: int
    start_ticks: int


class InitFinder:
    """Finds (and caches) the host pid of the init of a caller's pid namespace."""

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.proc = proc_root
        self.max_entries = max_entries
        self.clock = clock
        self._cache: OrderedDict[int, _CachedInit] = OrderedDict()  # least recent first
        self._host_namespace: int | None = None
        self._scans = float(SCAN_BURST)  # scans allowed now; one more each second
        self._scans_at = clock()

    def _namespace(self, pid: int | str) -> int:
        return pid_namespace(self.proc, pid)

    def _nspid(self, pid: int) -> tuple[int, ...]:
        try:
            # The process's name in it may be any bytes (the kernel prints it raw).
            return parse_nspid(read_text(f"{self.proc}/{pid}/status", errors="surrogateescape"))
        except (FileNotFoundError, ProcessLookupError):
            raise ProcessGone(pid) from None

    def _start_ticks(self, pid: int) -> int | None:
        try:
            stat = read_text(f"{self.proc}/{pid}/stat", errors="surrogateescape")
            return parse_start_ticks(stat)
        except (OSError, CgroupDataError):
            return None

    def host_namespace(self) -> int:
        """The daemon's own pid namespace: callers in it are "the host". A process never
        changes pid namespace, so it is looked up once."""
        if self._host_namespace is None:
            self._host_namespace = self._namespace("self")
        return self._host_namespace

    def find(self, pid: int, namespace: int | None = None) -> int | None:
        """Host pid of the init of ``pid``'s namespace (``namespace``, when the caller
        already looked it up), or None when ``pid`` shares the daemon's namespace (the
        host: LXCFS then uses the caller itself)."""
        if namespace is None:
            namespace = self._namespace(pid)
        if namespace == self.host_namespace():
            return None
        cached = self._cache.get(namespace)
        if cached is not None and self._start_ticks(cached.pid) == cached.start_ticks:
            self._cache.move_to_end(namespace)
            return cached.pid
        init = pid if self._nspid(pid)[-1] == 1 else self._ancestor_init(pid, namespace)
        if init is None:
            self._take_scan()
            init = self._scan(namespace)
        start = self._start_ticks(init)
        if start is not None:
            self._cache[namespace] = _CachedInit(init, start)
            self._cache.move_to_end(namespace)
            while len(self._cache) > self.max_entries:  # the least recently asked go first
                self._cache.popitem(last=False)  # (the containers being read stay)
        return init

    def _take_scan(self) -> None:
        """Spend one of the scans of /proc allowed (SCAN_BURST, then one a second): a scan
        reads every process on the node in the FUSE thread, and a tenant can make pid
        namespaces whose readers' parents are outside them (setns) in a loop.

        Raises:
            ServeHost: none left now; the caller is answered as for no init (its own
                cgroups, the host's uptime) and the next read tries again.
        """
        now = self.clock()
        self._scans = min(float(SCAN_BURST), self._scans + (now - self._scans_at))
        self._scans_at = now
        if self._scans < 1.0:
            raise ServeHost("finding the init of new pid namespaces: too many at once")
        self._scans -= 1.0

    def _ancestor_init(self, pid: int, namespace: int) -> int | None:
        """The init found up ``pid``'s parents, staying in ``namespace``: a namespace's
        processes descend from its init (orphans are re-parented to it), so this takes
        a few reads, where a scan reads every process on the node, which a tenant making
        pid namespaces in a loop could make every read of a new one pay. None when the
        chain leaves the namespace first (``docker exec``: its parent is the runtime's)."""
        current = pid
        for _step in range(64):
            try:
                status = read_text(f"{self.proc}/{current}/status", errors="surrogateescape")
                if parse_nspid(status)[-1] == 1:
                    return current
                parent = parse_ppid(status)
                if parent <= 0 or self._namespace(parent) != namespace:
                    return None
            except (OSError, ProcfsViewError):
                return None
            current = parent
        return None

    def _scan(self, namespace: int) -> int:
        """Walk /proc in pid order for the process whose innermost pid is 1 there. If the
        init already exited (an orphaned namespace), the oldest member stands in for it."""
        oldest: int | None = None
        for entry in sorted((e for e in os.listdir(self.proc) if e.isdigit()), key=int):
            with contextlib.suppress(ProcessGone, CgroupDataError, OSError):
                if self._namespace(entry) != namespace:
                    continue
                candidate = int(entry)
                if self._nspid(candidate)[-1] == 1:
                    return candidate
                if oldest is None:
                    oldest = candidate
        if oldest is None:
            raise ProcessGone(-1)
        return oldest
