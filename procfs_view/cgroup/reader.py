"""Read a process's cgroups into typed records, hiding every v1/v2 file-name difference.

References: Documentation/admin-guide/cgroup-v1/{memory,cpuacct,cpusets,blkio-controller}.rst
and Documentation/admin-guide/cgroup-v2.rst in the kernel tree.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from procfs_view.cgroup.discovery import (
    CgroupLayout,
    CgroupMembership,
    Hierarchy,
    cgroup_within,
)
from procfs_view.cgroup.records import (
    CpuQuota,
    CpuTimes,
    CpuUsage,
    IoCounters,
    IoRecord,
    MemoryRecord,
    MemoryStat,
    SwapRecord,
)
from procfs_view.errors import CgroupDataError, CgroupUnavailable, ServeHost
from procfs_view.fileio import read_bytes
from procfs_view.logsetup import LogOnce
from procfs_view.parsers import (
    KeyPicker,
    limit_value,
    parse_blkio_recursive,
    parse_cpu_list,
    parse_flat_keyed,
    parse_int,
    parse_limit,
    parse_nested_keyed,
    parse_usage_all,
    parse_usage_percpu,
)

PRESSURE_RESOURCES = ("cpu", "io", "memory")
#: Seconds the v1 blkio layers found counting (and their devices) are kept.
BLKIO_RECHECK = 10.0

if TYPE_CHECKING:
    from procfs_view.host import BusyDevice

Device = tuple[int, int]  # (major, minor)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CgroupDir:
    """One cgroup directory in one hierarchy, with the reads every controller needs."""

    hierarchy: Hierarchy
    path: Path
    read_file: Callable[[str], bytes] = field(default=read_bytes, compare=False, repr=False)

    @property
    def version(self) -> int:
        return self.hierarchy.version

    @property
    def is_root(self) -> bool:
        """True for the hierarchy's root: the host itself, not a container."""
        return self.path == self.hierarchy.mount_point

    def lineage(self) -> Iterator[Path]:
        """This directory, then each ancestor up to and including the hierarchy root."""
        return iter(_lineage(self.path, self.hierarchy.mount_point))

    def limit_lineage(self) -> Iterator[Path]:
        """``lineage`` without the hierarchy root when that is the host's root cgroup,
        which never has a limit (v1 refuses one with EINVAL, v2 has no limit files there):
        reading it would cost a syscall per request, ~40 us after an idle spell."""
        lineage = _lineage(self.path, self.hierarchy.mount_point)
        if lineage[-1] == self.hierarchy.mount_point and _is_host_root(
            self.hierarchy.mount_point, self.version
        ):
            lineage = lineage[:-1]
        return iter(lineage)

    def read(self, name: str) -> str:
        """Read ``name`` in this cgroup.

        Raises:
            CgroupUnavailable: missing file, cgroup removed (ENOENT/ENODEV), unreadable.
        """
        return _read(f"{self.path}/{name}", self.read_file)

    def read_optional(self, name: str) -> str | None:
        """Read ``name`` or return None when this kernel/controller does not provide it
        (no such file in a cgroup that exists, or a read the kernel does not support).
        Any other failure (EIO, EACCES, a removed cgroup) is no answer: CgroupUnavailable,
        not the all-zero statistics or "no swap accounting" that None would mean."""
        path = f"{self.path}/{name}"
        try:
            data = self.read_file(path)
        except OSError as error:
            if error.errno in _NOT_PROVIDED and os.path.isdir(self.path):
                return None
            raise _unreadable(path, error) from None
        return _ascii(data, path)

    def min_over_lineage(self, name: str, absent_sets_none: bool = False) -> int | None:
        """The smallest limit in this cgroup and its ancestors (a parent's limit binds its
        children). By default this cgroup's file must be readable and ancestors lacking
        it (the v2 root) are skipped; with ``absent_sets_none`` a cgroup without the file
        (the controller not enabled there: a v2 cgroup below one that holds processes, a
        unit without accounting) sets no limit, and any other read failure raises."""
        tightest: int | None = None
        for index, path in enumerate(self.limit_lineage()):
            where = f"{path}/{name}"
            if absent_sets_none:
                text = CgroupDir(self.hierarchy, path, self.read_file).read_optional(name)
                if text is None:
                    continue
            else:
                try:
                    text = _read(where, self.read_file)
                except CgroupUnavailable:
                    if index == 0:
                        raise
                    continue
            value = parse_limit(text, where)
            if value is not None and (tightest is None or value < tightest):
                tightest = value
        return tightest


@functools.lru_cache(maxsize=4096)
def _lineage(path: Path, mount_point: Path) -> tuple[Path, ...]:
    """``CgroupDir.lineage``, memoized (pure; every request walks the same few cgroups)."""
    lineage = [path]
    while path != mount_point and path.parent != path:
        path = path.parent
        lineage.append(path)
    return tuple(lineage)


@functools.lru_cache(maxsize=64)
def _is_host_root(mount_point: Path, version: int) -> bool:
    """Whether ``mount_point`` is the root cgroup of the host, not that of a cgroup
    namespace or a bind-mounted subtree (whose limits bind its children): only the real v1
    root has ``cgroup.sane_behavior``, and only a v2 root lacks ``cgroup.type``. When
    that cannot be told, it is not: the walk then reads the root, as it always did."""
    try:
        if version == 1:
            return (mount_point / "cgroup.sane_behavior").exists()
        return (mount_point / "cgroup.controllers").exists() and not (
            mount_point / "cgroup.type"
        ).exists()
    except OSError:
        return False


#: Errors that mean "this kernel does not provide that file" for an optional one.
_NOT_PROVIDED = frozenset({errno.ENOENT, errno.EOPNOTSUPP, errno.ENOTSUP})


def _read(path: str, read_file: Callable[[str], bytes] = read_bytes) -> str:
    try:
        data = read_file(path)
    except OSError as error:
        raise _unreadable(path, error) from None
    return _ascii(data, path)


def _unreadable(path: str, error: OSError) -> CgroupUnavailable:
    reason = errno.errorcode.get(error.errno or 0, str(error.errno))
    return CgroupUnavailable(f"cannot read {path}: {reason}")


def _ascii(data: bytes, path: str) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise CgroupDataError(f"{path}: not ASCII text") from None


_V1_MEMORY_STAT_KEYS = {
    "anon": "total_rss",
    "file": "total_cache",
    "shmem": "total_shmem",
    "mapped": "total_mapped_file",
    "anon_thp": "total_rss_huge",
    "active_anon": "total_active_anon",
    "inactive_anon": "total_inactive_anon",
    "active_file": "total_active_file",
    "inactive_file": "total_inactive_file",
    "unevictable": "total_unevictable",
    "dirty": "total_dirty",
    "writeback": "total_writeback",
}
_V2_MEMORY_STAT_KEYS = {
    "anon": "anon",
    "file": "file",
    "shmem": "shmem",
    "mapped": "file_mapped",
    "anon_thp": "anon_thp",
    "active_anon": "active_anon",
    "inactive_anon": "inactive_anon",
    "active_file": "active_file",
    "inactive_file": "inactive_file",
    "unevictable": "unevictable",
    "dirty": "file_dirty",
    "writeback": "file_writeback",
}
# Present only on some kernels; None when absent so the view can tell "unknown" from zero.
_V2_OPTIONAL_KEYS = {
    "slab_reclaimable": "slab_reclaimable",
    "slab_unreclaimable": "slab_unreclaimable",
    "shmem_thp": "shmem_thp",
    "kernel_stack": "kernel_stack",
    "pagetables": "pagetables",
    "percpu": "percpu",
}


#: Where each MemoryStat field is in memory.stat, per cgroup version, in field order; v1's
#: picker also takes the limits the kernel folds over the lineage.
_OPTIONAL_STAT_FIELDS = tuple(_V2_OPTIONAL_KEYS)
_MANDATORY_STAT_FIELDS = tuple(_V1_MEMORY_STAT_KEYS)
_STAT_KEYS = {
    1: [
        *_V1_MEMORY_STAT_KEYS.values(),
        *(f"total_{key}" for key in _V2_OPTIONAL_KEYS.values()),
    ],
    2: [*_V2_MEMORY_STAT_KEYS.values(), *_V2_OPTIONAL_KEYS.values()],
}
_V1_LIMIT_KEYS = ["hierarchical_memory_limit", "hierarchical_memsw_limit"]
_STAT_PICKERS = {
    1: KeyPicker([*_STAT_KEYS[1], *_V1_LIMIT_KEYS]),
    2: KeyPicker(_STAT_KEYS[2]),
}
_MANDATORY = len(_MANDATORY_STAT_FIELDS)
_STAT_FIELDS = _MANDATORY + len(_OPTIONAL_STAT_FIELDS)


def memory_stat_from(values: Mapping[str, int], version: int) -> MemoryStat:
    """Reconcile memory.stat keys: v1 ``total_*`` (hierarchical) vs v2 unprefixed.

    Exact key matches only: LXCFS's prefix matching made ``total_rss_huge`` swallow into
    ``total_rss`` and left AnonHugePages (and v2 Mapped) at 0.
    """
    return _memory_stat([values.get(key) for key in _STAT_KEYS[version]])


def _memory_stat(values: Sequence[int | None]) -> MemoryStat:
    """MemoryStat from its fields' values in field order (None = absent): absent mandatory
    fields are 0, absent optional ones stay None, negative values are 0."""
    mandatory = [0 if value is None or value < 0 else value for value in values[:_MANDATORY]]
    optional = [None if value is None else max(0, value) for value in values[_MANDATORY:]]
    return MemoryStat(*mandatory, *optional)


@functools.lru_cache(maxsize=1024)
def _parse_memory_stat(text: str, version: int) -> tuple[MemoryStat, int | None, int | None]:
    """memory.stat as (record, v1 ``hierarchical_memory_limit``, ``..._memsw_limit``).

    Memoized on the text (a pure function of it, so exact): the kernel folds its per-CPU
    counters into these figures only every 2 s or after a few hundred page changes, so a
    container's memory.stat is most often byte for byte what it was at its last read, and
    a dictionary lookup replaces the parse. Bounded: 1024 texts of 1-2 KiB.

    Raises:
        CgroupDataError: no ``key value`` lines (errors are not memoized).
    """
    values = _STAT_PICKERS[version].pick(text, "memory.stat")
    if version == 1:
        return _memory_stat(values[:_STAT_FIELDS]), values[_STAT_FIELDS], values[_STAT_FIELDS + 1]
    return _memory_stat(values), None, None


def _cfs_v1_quota(directory: Path, read_file: Callable[[str], bytes]) -> float | None:
    quota = parse_int(_read(f"{directory}/cpu.cfs_quota_us", read_file), "cpu.cfs_quota_us")
    if quota <= 0:  # -1 = no quota
        return None
    period = parse_int(_read(f"{directory}/cpu.cfs_period_us", read_file), "cpu.cfs_period_us")
    if period <= 0:
        raise CgroupDataError(f"{directory}/cpu.cfs_period_us: period {period}")
    return _ratio(quota, period, f"{directory}/cpu.cfs_quota_us")


def _tighter(mine: float | None, theirs: float | None) -> bool:
    """Whether limit ``mine`` binds more than ``theirs`` (None: no limit)."""
    return mine is not None and (theirs is None or mine < theirs)


def _cfs_v2_quota(text: str, what: str) -> float | None:
    """``cpu.max`` is ``$MAX $PERIOD`` where $MAX may be ``max``."""
    parts = text.split()
    if not parts or len(parts) > 2:
        raise CgroupDataError(f"{what}: expected '$MAX $PERIOD', got {text[:40]!r}")
    if parts[0] == "max":
        return None
    quota = parse_int(parts[0], what)
    period = parse_int(parts[1], what) if len(parts) == 2 else 100000
    if quota <= 0 or period <= 0:
        raise CgroupDataError(f"{what}: bad bandwidth {text.strip()!r}")
    return _ratio(quota, period, what)


def _ratio(quota: int, period: int, what: str) -> float:
    try:
        return quota / period
    except OverflowError:  # a 400-digit quota from a broken or hostile file
        raise CgroupDataError(f"{what}: bandwidth out of range") from None


def _unified_is_the_containers(membership: CgroupMembership) -> bool:
    """On a hybrid host whether the caller's v2 cgroup is its container's: with systemd's
    driver it is the same path as its v1 ones, but with the cgroupfs driver every
    container's processes share the runtime's (``0::/system.slice/containerd.service``),
    whose pressure would be every container's together. So: at or below its v1 memory
    (or cpu) cgroup."""
    anchor = membership.v1.get("memory") or membership.v1.get("cpu")
    unified = membership.unified
    if anchor is None or unified is None:
        return False
    return cgroup_within(unified, anchor)


class CgroupReader:
    """Answers semantic questions about a process's cgroups (memory limit, cpuset, ...)."""

    def __init__(
        self,
        layout: CgroupLayout,
        read_file: Callable[[str], bytes] = read_bytes,
        busy_devices: Callable[[], Mapping[Device, BusyDevice]] | None = None,
    ) -> None:
        """``busy_devices``: the host's devices with I/O, each with where else its I/O is
        counted (``HostReader.busy_devices``); without it every device is taken to be
        counted when any is."""
        self.layout = layout
        self.read_file = read_file
        self.busy_devices = busy_devices
        self._cfq_files = True  # until a blkio cgroup is seen without them
        self._log_once = LogOnce(log)
        self._blkio_layer_of: dict[tuple[Hierarchy, Device], str] = {}
        self._blkio_layers: dict[
            Hierarchy, tuple[float, dict[str, dict[Device, int] | None], list[str]]
        ] = {}

    # -- locating ---------------------------------------------------------------------------

    def locate(self, membership: CgroupMembership, controller: str) -> CgroupDir:
        """The directory of the process's cgroup for ``controller``.

        Raises:
            CgroupUnavailable: no hierarchy has this controller, or the process is not in it.
        """
        hierarchy = self.layout.hierarchy_for(controller)
        if hierarchy is None:
            raise CgroupUnavailable(f"no cgroup hierarchy provides {controller}")
        return self._locate_in(membership, hierarchy, controller)

    def _locate_in(
        self, membership: CgroupMembership, hierarchy: Hierarchy, what: str
    ) -> CgroupDir:
        path = membership.path_in(hierarchy)
        if path is None:
            raise CgroupUnavailable(f"pid {membership.pid} has no {what} cgroup")
        return CgroupDir(hierarchy, hierarchy.directory(path), self.read_file)

    def locate_unified(self, membership: CgroupMembership) -> CgroupDir | None:
        """The process's v2 cgroup, if there is a unified hierarchy."""
        if self.layout.unified is None or membership.unified is None:
            return None
        return self._locate_in(membership, self.layout.unified, "unified")

    def limited_below(self, caller: CgroupMembership, container: CgroupMembership) -> bool:
        """Whether the caller's own cgroups, below its container's (``within_init``), limit
        it more tightly than the container's do: a lower memory limit or CPU quota (set
        on them or between), or fewer CPUs. Such a caller (a JVM service with
        ``MemoryMax=512M`` in an 8 GiB system container) must keep its own cgroups, or it
        would be shown 8 GiB and size its heap for them; a limit no tighter than the
        container's changes nothing it would be shown. Unreadable or unparsable files
        count as a limit: the caller then keeps its own, as before the lift."""
        try:
            memory = self.layout.hierarchy_for("memory")
            if memory is not None:
                own, top = caller.path_in(memory), container.path_in(memory)
                if own is not None and top is not None and own != top:
                    name = "memory.limit_in_bytes" if memory.version == 1 else "memory.max"
                    mine = CgroupDir(memory, memory.directory(own), self.read_file)
                    theirs = CgroupDir(memory, memory.directory(top), self.read_file)
                    if _tighter(
                        mine.min_over_lineage(name, absent_sets_none=True),
                        theirs.min_over_lineage(name, absent_sets_none=True),
                    ):
                        return True
            cpu = self.layout.hierarchy_for("cpu")
            if (
                cpu is not None
                and caller.path_in(cpu) is not None
                and _tighter(self.cpu_quota(caller).cpus, self.cpu_quota(container).cpus)
            ):
                return True
            return self.cpuset(caller) != self.cpuset(container)
        except (CgroupUnavailable, CgroupDataError):
            return True

    def _container(self, membership: CgroupMembership, controller: str) -> CgroupDir:
        """Like ``locate`` but a process in the root cgroup is the host: serve host files."""
        directory = self.locate(membership, controller)
        if directory.is_root:
            raise ServeHost(f"pid {membership.pid} is in the root {controller} cgroup")
        return directory

    # -- memory -----------------------------------------------------------------------------

    def memory(self, membership: CgroupMembership, swap: bool = True) -> MemoryRecord:
        """Limit, usage, memory.stat and swap of the process's memory cgroup (``swap``
        False skips the swap files: no swap record, as with swap accounting off).

        On v1 the limits over the lineage come from memory.stat's
        ``hierarchical_memory_limit``/``hierarchical_memsw_limit``, which the kernel
        computes as the minimum over the cgroup and all its ancestors (even those above
        our mount), so one read replaces a walk per limit; without them (old kernels,
        fixtures) the limit files are walked."""
        directory = self._container(membership, "memory")
        v1 = directory.version == 1
        stat_text = directory.read_optional("memory.stat")
        stat, hierarchical_limit, hierarchical_memsw_limit = (
            (MemoryStat(), None, None)
            if stat_text is None
            else _parse_memory_stat(stat_text, directory.version)
        )
        if hierarchical_limit is not None:
            limit = limit_value(hierarchical_limit)
        else:
            limit = directory.min_over_lineage("memory.limit_in_bytes" if v1 else "memory.max")
        usage = parse_int(
            directory.read("memory.usage_in_bytes" if v1 else "memory.current"), "usage"
        )
        swap_record = None
        if swap:
            swap_record = (
                self._swap_v1(directory, limit, usage, hierarchical_memsw_limit)
                if v1
                else self._swap_v2(directory)
            )
        return MemoryRecord(limit, max(0, usage), stat, swap_record)

    def _swap_v1(
        self,
        directory: CgroupDir,
        memory_limit: int | None,
        usage: int,
        hierarchical_memsw_limit: int | None,
    ) -> SwapRecord | None:
        """v1 accounts memory+swap together (memsw); swap = memsw - memory."""
        memsw_usage_text = directory.read_optional("memory.memsw.usage_in_bytes")
        if memsw_usage_text is None:  # swap accounting off (swapaccount=0)
            return None
        memsw_limit = (
            directory.min_over_lineage("memory.memsw.limit_in_bytes")
            if hierarchical_memsw_limit is None
            else limit_value(hierarchical_memsw_limit)
        )
        swap_limit = (
            None
            if memsw_limit is None or memory_limit is None
            else max(0, memsw_limit - memory_limit)
        )
        swap_usage = max(0, parse_int(memsw_usage_text, "memsw usage") - usage)
        swappiness_text = directory.read_optional("memory.swappiness")
        swappiness = 60 if swappiness_text is None else parse_int(swappiness_text, "swappiness")
        return SwapRecord(swap_limit, swap_usage, swappiness)

    def _swap_v2(self, directory: CgroupDir) -> SwapRecord | None:
        current = directory.read_optional("memory.swap.current")
        if current is None:
            return None
        limit = directory.min_over_lineage("memory.swap.max")
        return SwapRecord(
            None if limit is None else int(limit), max(0, parse_int(current, "swap.current"))
        )

    # -- CPU --------------------------------------------------------------------------------

    def cpuset(self, membership: CgroupMembership) -> tuple[int, ...] | None:
        """CPUs the process may run on; None when no hierarchy has the cpuset controller.

        The effective list first: on v2 ``cpuset.cpus`` is only a request (empty means
        "inherit"), and what the kernel grants is narrowed by the ancestors' lists and by
        sibling partitions (``AllowedCPUs=0-1`` on a slice leaves a container asking for
        0-7 on 0-1); on v1 the two lists are the same. LXCFS reads ``cpuset.cpus`` first
        and shows the request. A cgroup without the files (v2: the controller not enabled
        for it) or with empty ones takes the nearest ancestor's.
        """
        try:
            directory = self.locate(membership, "cpuset")
        except CgroupUnavailable:
            if self.layout.hierarchy_for("cpuset") is None:
                return None
            raise
        effective = "cpuset.effective_cpus" if directory.version == 1 else "cpuset.cpus.effective"
        for path in directory.lineage():
            for name in (effective, "cpuset.cpus"):
                where = f"{path}/{name}"
                try:
                    text = _read(where, self.read_file)
                except CgroupUnavailable:
                    if path == directory.path and not path.is_dir():
                        raise
                    continue
                if text.strip():
                    return parse_cpu_list(text, where)
        return None

    def cpu_quota(self, membership: CgroupMembership) -> CpuQuota:
        """min(quota/period) over the cgroup and its ancestors. Never shares/weight: they
        are relative and say nothing about how many CPUs a container may use (LXCFS #600)."""
        try:
            directory = self.locate(membership, "cpu")
        except CgroupUnavailable:
            if self.layout.hierarchy_for("cpu") is None:
                return CpuQuota(None)
            raise
        tightest: float | None = None
        for index, path in enumerate(directory.limit_lineage()):
            try:
                if directory.version == 1:
                    value = _cfs_v1_quota(path, self.read_file)
                else:
                    where = f"{path}/cpu.max"
                    value = _cfs_v2_quota(_read(where, self.read_file), where)
            except CgroupUnavailable:
                if index == 0 and not path.is_dir():
                    raise
                continue
            if value is not None and (tightest is None or value < tightest):
                tightest = value
        return CpuQuota(tightest)

    def locate_cpu_usage(self, membership: CgroupMembership) -> CgroupDir:
        """Where the process's CPU time is accounted (v1 cpuacct, else the v2 cgroup), the
        hierarchy's root included: a process there may still be limited to some CPUs by
        its cpuset (or quota), and is then shown those CPUs' host lines."""
        if self.layout.hierarchy_for("cpuacct") is not None:
            return self.locate(membership, "cpuacct")
        unified = self.locate_unified(membership)
        if unified is None:
            raise CgroupUnavailable("no cpuacct hierarchy and no unified hierarchy")
        return unified

    def cpu_usage_dir(self, membership: CgroupMembership) -> CgroupDir:
        """Where the cgroup's CPU time is accounted: v1 cpuacct, else the v2 cgroup."""
        directory = self.locate_cpu_usage(membership)
        if directory.is_root:
            raise ServeHost(f"pid {membership.pid} is in the root cgroup")
        return directory

    def visible_cpu_dirs(self, membership: CgroupMembership, cpu_view: bool) -> tuple[Path, ...]:
        """The directories that decide which CPUs the process is shown: its cpuset cgroup
        (none without a cpuset hierarchy) and, with the CPU view, its cpu (quota) cgroup.
        On v1 processes sharing a cpuacct cgroup may differ in these (a workload pinned into
        a sub-cpuset of its container)."""
        dirs = []
        for controller in ("cpuset", "cpu") if cpu_view else ("cpuset",):
            if self.layout.hierarchy_for(controller) is not None:
                dirs.append(self.locate(membership, controller).path)
        return tuple(dirs)

    def cpu_usage(self, membership: CgroupMembership) -> CpuUsage:
        """CPU time used by the cgroup: v1 cpuacct per CPU, v2 cpu.stat totals."""
        directory = self.cpu_usage_dir(membership)
        if directory.version == 1:
            return self._cpuacct_usage(directory)
        stat = parse_flat_keyed(directory.read("cpu.stat"), "cpu.stat")
        try:
            usage_usec = stat["usage_usec"]
        except KeyError:
            raise CgroupDataError("cpu.stat: no usage_usec") from None
        user = stat.get("user_usec", usage_usec) * 1000
        system = stat.get("system_usec", 0) * 1000
        return CpuUsage(CpuTimes(max(0, user), max(0, system)))

    @staticmethod
    def _cpuacct_usage(directory: CgroupDir) -> CpuUsage:
        usage_all = directory.read_optional("cpuacct.usage_all")
        per_cpu: dict[int, CpuTimes]
        if usage_all is not None:
            rows = parse_usage_all(usage_all, "cpuacct.usage_all")
            if min(map(min, rows.values()), default=0) >= 0:  # the kernel's u64 counters
                # One row per host CPU, hundreds on big hosts: built without a Python loop.
                per_cpu = dict(zip(rows, map(CpuTimes._make, rows.values()), strict=True))
            else:
                per_cpu = {cpu: CpuTimes(max(0, u), max(0, s)) for cpu, (u, s) in rows.items()}
        else:  # kernels before 4.7 have only the per-CPU total
            totals = parse_usage_percpu(directory.read("cpuacct.usage_percpu"), "usage_percpu")
            per_cpu = {cpu: CpuTimes(max(0, ns), 0) for cpu, ns in totals.items()}
        columns = list(zip(*per_cpu.values(), strict=True))  # (users, systems)
        total = CpuTimes(sum(columns[0]), sum(columns[1])) if columns else CpuTimes(0, 0)
        return CpuUsage(total, per_cpu)

    # -- block I/O --------------------------------------------------------------------------

    def io_dir(self, membership: CgroupMembership) -> CgroupDir:
        """Where the cgroup's I/O is counted: v1 blkio, else the v2 cgroup."""
        if self.layout.hierarchy_for("blkio") is not None:
            return self._container(membership, "blkio")
        return self._container(membership, "io")

    def io(self, membership: CgroupMembership) -> IoRecord:
        """Per-device I/O counters of the cgroup (and its descendants)."""
        directory = self.io_dir(membership)
        if directory.hierarchy.version == 1:
            return self._blkio_v1(directory)
        devices = parse_nested_keyed(directory.read("io.stat"), "io.stat")
        return IoRecord(
            {
                device: IoCounters(
                    read_ios=c.get("rios", 0),
                    write_ios=c.get("wios", 0),
                    discard_ios=c.get("dios", 0),
                    read_bytes=c.get("rbytes", 0),
                    write_bytes=c.get("wbytes", 0),
                    discard_bytes=c.get("dbytes", 0),
                )
                for device, c in devices.items()
            }
        )

    def _blkio_v1(self, directory: CgroupDir) -> IoRecord:
        """CFQ-era ``blkio.io_*_recursive`` when present (kernels < 5.0), else the counts of
        the throttle layer (``blkio.throttle.io_*_recursive``) or of BFQ
        (``blkio.bfq.io_*_recursive``, devices scheduled by BFQ), whichever counts I/O on
        this host. LXCFS reads only the first and serves the host file on current kernels.

        Since Linux 6.10 the throttle layer counts nothing until a throttle rule is set on
        a device, and BFQ counts only its own devices: a cgroup's empty files then mean
        "not counted", not "no I/O". The hierarchy's root shows which: when no layer has
        counted any I/O there, the host file is served (ServeHost), never an empty one.

        The CFQ files exist in every blkio cgroup or in none (CFQ is built into the kernel
        or not), so once one cgroup lacked them they are not looked for again: a failed
        open and a directory check per read, ~80 us on a read after an idle spell."""

        def table(name: str) -> dict[tuple[int, int], dict[str, int]]:
            text = directory.read_optional(name)
            return {} if text is None else parse_blkio_recursive(text, name)

        serviced = {}
        if self._cfq_files:
            text = directory.read_optional("blkio.io_serviced_recursive")
            if text is None:
                self._cfq_files = False
            else:
                serviced = parse_blkio_recursive(text, "blkio.io_serviced_recursive")
        if serviced:
            service_bytes = table("blkio.io_service_bytes_recursive")
            merged = table("blkio.io_merged_recursive")
            wait = table("blkio.io_wait_time_recursive")
            service_time = table("blkio.io_service_time_recursive")
        else:  # no CFQ: its merge and time files are gone too, only the counts remain
            # Each device from one layer that counts it, and always the same one while it
            # does: first the one that has counted the most of its I/O at the root (the
            # one counting it longest), so a throttle rule set later on a BFQ disk does not
            # switch it to the throttle layer's fresh, smaller counts (nor back).
            service_bytes = {}
            layers = self._counting_blkio_layers(directory)
            tables = {
                layer: (
                    table(f"blkio.{layer}io_serviced_recursive"),
                    table(f"blkio.{layer}io_service_bytes_recursive"),
                )
                for layer in layers
            }
            for device in {d for ios, size in tables.values() for d in (*ios, *size)}:
                counting = {
                    layer: 0 if counted is None else counted[device]
                    for layer, counted in layers.items()
                    if (counted is None or device in counted)
                    and (device in tables[layer][0] or device in tables[layer][1])
                }
                if not counting:
                    continue
                key = (directory.hierarchy, device)
                layer = self._blkio_layer_of.get(key, "")
                if layer not in counting:
                    layer = max(counting, key=lambda name: counting[name])
                    self._blkio_layer_of[key] = layer
                serviced[device] = tables[layer][0].get(device, {})
                service_bytes[device] = tables[layer][1].get(device, {})
            merged = wait = service_time = {}
        devices: dict[tuple[int, int], IoCounters] = {}
        for device in set(serviced) | set(service_bytes):
            ios = serviced.get(device, {})
            size = service_bytes.get(device, {})
            merges = merged.get(device, {})
            waits = wait.get(device, {})
            services = service_time.get(device, {})
            ns_per_ms = 1_000_000
            devices[device] = IoCounters(
                read_ios=ios.get("Read", 0),
                write_ios=ios.get("Write", 0),
                discard_ios=ios.get("Discard", 0),
                read_bytes=size.get("Read", 0),
                write_bytes=size.get("Write", 0),
                discard_bytes=size.get("Discard", 0),
                read_merged=merges.get("Read", 0),
                write_merged=merges.get("Write", 0),
                read_time_ms=(waits.get("Read", 0) + services.get("Read", 0)) // ns_per_ms,
                write_time_ms=(waits.get("Write", 0) + services.get("Write", 0)) // ns_per_ms,
                service_time_ms=services.get("Total", 0) // ns_per_ms,
            )
        return IoRecord(devices)

    def _counting_blkio_layers(self, directory: CgroupDir) -> dict[str, dict[Device, int] | None]:
        """The layers that count this host's I/O per cgroup, each with the devices it
        counts and the I/Os it has counted on each at the hierarchy root (a device with
        none is not counted there); None for a root without the file (a fixture tree, a
        bind of a subtree), trusted to count every device, as before. Kept for
        BLKIO_RECHECK seconds: the root's recursive files make the kernel sum every
        cgroup.

        Raises:
            ServeHost: the cgroup's numbers are not known: no layer has counted any I/O
                (kernel >= 6.10 without a throttle rule, no BFQ device), or the host has
                done I/O on a device no layer counts (BFQ on one disk, the others not),
                whose I/O would be missing from every container's file.
        """
        now = time.monotonic()
        cached = self._blkio_layers.get(directory.hierarchy)
        if cached is not None and now - cached[0] < BLKIO_RECHECK:
            _, layers, uncounted = cached
        else:
            layers = {}
            root = CgroupDir(directory.hierarchy, directory.hierarchy.mount_point, self.read_file)
            for layer in ("throttle.", "bfq."):
                name = f"blkio.{layer}io_serviced_recursive"
                text = root.read_optional(name)
                if text is None:
                    if layer == "throttle.":
                        layers[layer] = None
                    continue
                devices = {
                    device: counts.get("Total", 0)
                    for device, counts in parse_blkio_recursive(text, name).items()
                    if counts.get("Total", 0) > 0
                }
                if devices:
                    layers[layer] = devices
            uncounted = self._uncounted_devices(layers)
            self._blkio_layers[directory.hierarchy] = (now, layers, uncounted)
        if not layers:
            self._log_once.warning(
                ("blkio: none counted", ""),
                "cgroup v1 blkio counts no I/O per cgroup on this kernel (no CFQ; the "
                "throttle layer counts only once a throttle rule is set, since Linux 6.10; "
                "no device uses BFQ): containers read the host's /proc/diskstats",
            )
            raise ServeHost("blkio counts no I/O per cgroup on this kernel")
        if uncounted:
            self._log_once.warning(
                ("blkio: uncounted disks", " ".join(uncounted)),
                "cgroup v1 blkio counts no I/O per cgroup on %s, which the host uses (no "
                "throttle rule there since Linux 6.10, not scheduled by BFQ): containers "
                "read the host's /proc/diskstats",
                ", ".join(uncounted),
            )
            raise ServeHost(f"blkio counts no I/O per cgroup on {uncounted[0]}")
        return layers

    def _uncounted_devices(self, layers: Mapping[str, Mapping[Device, int] | None]) -> list[str]:
        """The host's busy devices whose I/O no layer counts: not counted themselves, and
        not a partition or stacked device whose members are all counted."""
        if self.busy_devices is None or not layers or None in layers.values():
            return []
        counted = {device for devices in layers.values() if devices for device in devices}
        try:
            busy = self.busy_devices()
        except (OSError, CgroupDataError) as error:
            log.debug("host block devices not known (%s): trusting the blkio counts", error)
            return []

        def covered(device: Device, visiting: frozenset[Device] = frozenset()) -> bool:
            if device in counted:
                return True
            about = busy.get(device)
            if about is None or device in visiting:
                return False
            if about.elsewhere:
                return True
            inner = visiting | {device}
            return any(
                linked and all(covered(other, inner) for other in linked)
                for linked in (about.parents, about.holders)
            )

        return sorted(about.name for device, about in busy.items() if not covered(device))

    # -- pressure ---------------------------------------------------------------------------

    def pressure(self, membership: CgroupMembership, resource: str) -> bytes:
        """The cgroup's ``<resource>.pressure`` (v2 PSI); v1 has none, so the host's."""
        if resource not in PRESSURE_RESOURCES:
            raise CgroupDataError(f"unknown pressure resource {resource!r}")
        unified = self.locate_unified(membership)
        if unified is None or unified.is_root:
            raise ServeHost("no v2 cgroup: pressure is the host's")
        if self.layout.v1 and not _unified_is_the_containers(membership):
            raise ServeHost("the v2 cgroup is not the container's (a hybrid host's runtime)")
        return unified.read(f"{resource}.pressure").encode()
