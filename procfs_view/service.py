"""Answers "what does pid P read at served path X": collects inputs, calls the view, falls back.

This is the single place that decides what a caller gets when something goes wrong: the
host file (never another container's numbers), with the reason logged once.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, fields, is_dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from procfs_view.cache import DEFAULT_CAPACITY, Clock, TtlCache
from procfs_view.cgroup import (
    CgroupLayout,
    CgroupMembership,
    CgroupReader,
    discover_layout,
    parse_proc_cgroup,
    read_cgroup_text,
    within_init,
)
from procfs_view.cgroup.records import CpuQuota, CpuUsage, IoRecord, MemoryRecord
from procfs_view.errors import (
    CgroupDataError,
    CgroupUnavailable,
    ProcessGone,
    ProcfsViewError,
    ServeHost,
)
from procfs_view.fileio import DEFAULT_OPEN_FILES, OpenFiles, read_text
from procfs_view.host import CachedHostReader, HostMeminfo, HostReader, clock_ticks
from procfs_view.identity import InitFinder, parse_tgid
from procfs_view.logsetup import LogOnce
from procfs_view.metrics import NoMetrics, Recorder
from procfs_view.options import ViewOptions
from procfs_view.registry import BY_PATH, SERVED_FILES, ServedFile
from procfs_view.views.cpus import VisibleCpus, visible_cpus
from procfs_view.views.diskstats import DiskState
from procfs_view.views.loadavg import LoadSample
from procfs_view.views.stat import StatState

__all__ = ["Request", "Roots", "ViewOptions", "ViewService"]

#: Descriptors of /proc/<pid>/cgroup kept at most: callers come and go, so these get a
#: pool of their own that cannot push out the cgroup files every container shares. Sized
#: for a node where every container has a few processes reading (top, an agent, a JVM):
#: with more distinct callers than this, each read opens its file again (measured: 46 us
#: instead of 9 us for 1000 callers with a pool of 512).
PID_FILES = 2048

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Roots:
    """Where the host's files are; tests point these at fixture trees."""

    proc: Path = Path("/proc")
    cgroup: Path = Path("/sys/fs/cgroup")
    sys: Path = Path("/sys")


class LoadSource(Protocol):
    """The loadavg sampler, as the service needs it (provided by the daemon with ``-l``)."""

    def sample(self, cgroup: Path) -> LoadSample | None: ...


StateT = TypeVar("StateT")


def describe_cgroup(cgroup_text: str) -> str:
    """The caller's cgroup for a log line: its v2 path, else its v1 memory cgroup."""
    paths = dict(
        line.split(":", 2)[1:] for line in cgroup_text.splitlines() if line.count(":") >= 2
    )
    for controllers, path in paths.items():
        if controllers == "" or "memory" in controllers.split(","):
            return path
    return "?" if not paths else next(iter(paths.values()))


#: What a stateful view's state is kept under: a cgroup directory, or several (the
#: /proc/stat state of callers that share a usage cgroup but not their cpuset).
StateKey = Path | tuple[Path, ...]


class StateStore(Generic[StateT]):
    """Per-cgroup state of the stateful views, keyed by cgroup directory (or a tuple of
    them): bounded (least recently used entries go first) and pruned of keys naming a
    cgroup that no longer exists."""

    def __init__(self, capacity: int = 4096, prune_every: int = 512) -> None:
        self.capacity = capacity
        self.prune_every = prune_every
        self._states: OrderedDict[StateKey, StateT] = OrderedDict()
        self._puts = 0

    def __len__(self) -> int:
        return len(self._states)

    def get(self, cgroup: StateKey) -> StateT | None:
        state = self._states.get(cgroup)
        if state is not None:
            self._states.move_to_end(cgroup)
        return state

    def put(self, cgroup: StateKey, state: StateT) -> None:
        self._states[cgroup] = state
        self._states.move_to_end(cgroup)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)
        self._puts += 1
        if self._puts % self.prune_every == 0:
            self.prune()

    def forget(self, cgroup: StateKey) -> None:
        self._states.pop(cgroup, None)

    def adopt(self, previous: StateStore[Any], state_type: type) -> None:
        """Take over the states of the service this one replaces (a reload), so no counter
        restarts from scratch: a restart makes ``top`` see counters jump back. Only states
        with ``state_type``'s fields are taken (the reloaded code may have changed them;
        it is a new class even when it has not), least recently used first. No pruning
        here: the previous store was pruned as it filled, and pruning every 512 of
        thousands of states made a reload quadratic."""
        wanted = [field.name for field in fields(state_type)]
        for cgroup, state in previous._states.items():
            if is_dataclass(state) and [field.name for field in fields(state)] == wanted:
                self._states[cgroup] = cast(StateT, state)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def prune(self) -> None:
        """Drop the state of cgroups that were removed. Only a key's first directory (where
        the counts come from) is checked, one ``stat`` per state: a cgroup made again
        there is told apart by the inode kept in the state, and a key whose other
        directories went (a sub-cpuset removed) is pushed out by the count bound."""
        for key in list(self._states):
            if not (key[0] if isinstance(key, tuple) else key).is_dir():
                del self._states[key]


def _identity(directory: Path) -> int:
    """A cgroup directory's inode: what tells a cgroup made again at the same path from the
    one a stateful view's state was kept for."""
    try:
        return os.stat(directory).st_ino
    except OSError as error:  # removed mid-request
        raise CgroupUnavailable(f"{directory}: {error.strerror}") from error


class Request:
    """The inputs of one caller's views, each read lazily and at most once per request.

    ``cgroup_text`` is the caller's ``/proc/<pid>/cgroup`` and ``namespace`` its pid
    namespace when the service already read them (to key its cache): the view is then
    computed from exactly those."""

    def __init__(
        self,
        service: ViewService,
        pid: int,
        cgroup_text: str | None = None,
        namespace: int | None = None,
    ) -> None:
        self.service = service
        self.pid = pid
        self.cgroup_text = cgroup_text
        self.namespace = namespace
        self.host = service.host
        self.cgroups = service.cgroups
        self.options = service.options
        self.user_hz = service.user_hz

    @cached_property
    def membership(self) -> CgroupMembership:
        """The cgroups of the caller's container (``within_init``): its own, or its pid
        namespace init's when it runs in a cgroup below that (a session or service under
        systemd in a system container)."""
        service = self.service
        text = self.cgroup_text
        if text is None:
            text = read_cgroup_text(self.pid, service.roots.proc, service.pid_files.read)
        caller = parse_proc_cgroup(self.pid, text)
        try:
            init = service.inits.find(self.pid, self.namespace)
            if init is None or init == self.pid:
                return caller
            init_text = read_cgroup_text(init, service.roots.proc, service.pid_files.read)
        except ProcessGone as gone:
            if gone.pid == self.pid:
                raise
            return caller  # the init just exited: the caller's own
        except (ProcfsViewError, OSError):  # no init to be found: the caller's own
            return caller
        container = within_init(caller, parse_proc_cgroup(init, init_text))
        if container is not caller and service.cgroups.limited_below(caller, container):
            return caller
        return container

    def memory(self) -> MemoryRecord:
        """The caller's memory cgroup. On a host without swap every container is shown none
        (its swap is bounded by the host's SwapTotal), so the swap files are not read: two
        of a v1 meminfo's four cgroup reads on the many nodes that run without swap."""
        swap = self.options.swap and self.host_meminfo.kb("SwapTotal") > 0
        return self.cgroups.memory(self.membership, swap=swap)

    @cached_property
    def host_meminfo(self) -> HostMeminfo:
        """The host's meminfo, read once per request: the swap check and the view then see
        the same snapshot (and with ``--cache-ttl 0`` it is not read twice)."""
        return self.host.meminfo()

    def visible_cpus(self) -> VisibleCpus:
        return self._visible_cpus

    @cached_property
    def _visible_cpus(self) -> VisibleCpus:
        # Without the CPU view the quota does not change which CPUs are shown.
        quota = self.cpu_quota() if self.options.cpu_view else CpuQuota(None)
        return visible_cpus(
            self.cgroups.cpuset(self.membership),
            self.host.online_cpus(),
            quota,
            self.options.cpu_view,
        )

    def cpu_usage(self) -> CpuUsage:
        return self.cgroups.cpu_usage(self.membership)

    def cpu_usage_at_root(self) -> bool:
        """Whether the caller's CPU time is accounted in the root cgroup (the host's)."""
        return self.cgroups.locate_cpu_usage(self.membership).is_root

    def cpu_state_key(self) -> tuple[tuple[Path, ...], int]:
        """The key of per-caller /proc/stat state and the usage directory's inode (what
        tells a cgroup made again at the same path from the old).

        The key is the directory the CPU usage comes from, then those that decide the
        visible CPUs (``visible_cpu_dirs``): callers sharing a v1 cpuacct cgroup under
        other cpusets each have counters of their own, where one state took each read by
        the other for a change of CPUs and showed a busy container 0 %."""
        directory = self.cgroups.cpu_usage_dir(self.membership).path
        key = (directory, *self.cgroups.visible_cpu_dirs(self.membership, self.options.cpu_view))
        return key, _identity(directory)

    def cpu_quota(self) -> CpuQuota:
        return self._cpu_quota

    @cached_property
    def _cpu_quota(self) -> CpuQuota:
        return self.cgroups.cpu_quota(self.membership)

    def cpu_seconds_or_zero(self) -> float:
        """CPU time of the caller's cgroup; 0 when it is the root cgroup or unknown."""
        try:
            return self.cpu_usage().total.busy / 1e9
        except (ServeHost, CgroupUnavailable, CgroupDataError):
            return 0.0

    def cpu_count_or_one(self) -> int:
        """How many CPUs the caller is shown (cpuinfo, stat, cpu/online); 1 when that
        cannot be told (uptime's idle is then one CPU's worth, as it was)."""
        try:
            return self.visible_cpus().count
        except (ServeHost, CgroupUnavailable, CgroupDataError):
            return 1

    def container_start(self) -> float:
        """Seconds after boot at which the caller's container (its pid-namespace init)
        started. A caller in the host's pid namespace is the host: serve the host file."""
        init = self.service.inits.find(self.pid, self.namespace)
        if init is None:
            raise ServeHost("caller is in the host pid namespace")
        return self.host.process_start_seconds(init)

    def io(self) -> IoRecord:
        return self.cgroups.io(self.membership)

    def io_cgroup(self) -> tuple[Path, int]:
        """The directory the I/O counts come from and its inode: the key of per-cgroup
        diskstats state, and what tells a cgroup made again at the same path from the old."""
        directory = self.cgroups.io_dir(self.membership).path
        return directory, _identity(directory)

    def pressure(self, resource: str) -> bytes:
        return self.cgroups.pressure(self.membership, resource)

    def load_sample(self) -> LoadSample:
        source = self.service.load_source
        if not self.options.loadavg or source is None:
            raise ServeHost("per-container loadavg is off (-l not given)")
        directory = self.cgroups.locate(self.membership, "cpu")
        if directory.is_root:
            raise ServeHost("caller is in the root cgroup")
        sample = source.sample(directory.path)
        if sample is None:
            raise ServeHost("no load sample yet")
        return sample


class ViewService:
    """Computes served files for callers; the FUSE layer and ``show`` both use it.

    With ``cache_ttl`` > 0, a rendered file is reused for at most ``cache_ttl`` seconds by
    callers in exactly the same cgroups and pid namespace (the same ``/proc/<pid>/cgroup``
    text and ``ns/pid`` link, read on every request), and host-wide
    inputs (meminfo, diskstats, online CPUs; cpuinfo for up to 1 s) are shared by all
    containers for as long. 0 computes every answer afresh.
    """

    def __init__(
        self,
        roots: Roots | None = None,
        options: ViewOptions | None = None,
        layout: CgroupLayout | None = None,
        load_source: LoadSource | None = None,
        cache_ttl: float = 0.0,
        cache_capacity: int = DEFAULT_CAPACITY,
        clock: Clock = time.monotonic,
        metrics: Recorder | None = None,
        open_files: int = DEFAULT_OPEN_FILES,
    ) -> None:
        self.roots = roots or Roots()
        self.metrics: Recorder = metrics or NoMetrics()
        self._options = options or ViewOptions()
        self.layout = layout or discover_layout(self.roots.proc, self.roots.cgroup)
        self.files = OpenFiles(open_files)
        self.pid_files = OpenFiles(min(open_files, PID_FILES))
        self.host = CachedHostReader(
            HostReader(self.roots.proc, self.roots.sys, self.files.read), cache_ttl, clock
        )
        self.cgroups = CgroupReader(self.layout, self.files.read, self.host.busy_devices)
        self.inits = InitFinder(self.roots.proc)
        self.user_hz = clock_ticks()
        self.load_source = load_source
        self.stat_states: StateStore[StatState] = StateStore()
        self.disk_states: StateStore[DiskState] = StateStore()
        self.cache_ttl = cache_ttl
        self.rendered: TtlCache[tuple[str, str, int], bytes] = TtlCache(
            cache_ttl, cache_capacity, clock, size_of=len
        )
        self._proc = str(self.roots.proc)
        self._namespaces: dict[int, tuple[int, int]] = {}  # pid -> (kept since, namespace)
        self._thread_groups: dict[int, int] = {}  # thread id -> its process (not the first)
        self._host_paths: dict[str, str] = {}
        self._log_once = LogOnce(log)

    def close(self) -> None:
        """Close the files kept open for re-reading (the service is being replaced)."""
        self.files.close()
        self.pid_files.close()

    @property
    def options(self) -> ViewOptions:
        return self._options

    @options.setter
    def options(self, options: ViewOptions) -> None:
        """New options (SIGUSR2 toggles ``virtualize``): nothing cached under the old ones
        may be served."""
        self._options = options
        self.rendered.clear()
        self.host.clear()

    def served_files(self) -> tuple[ServedFile, ...]:
        """What this host serves: pressure files only with a v2 hierarchy that has
        controllers (per-cgroup PSI does not exist on v1)."""
        has_unified = self.layout.unified is not None and bool(self.layout.unified.controllers)
        return tuple(s for s in SERVED_FILES if has_unified or not s.needs_unified)

    def served_paths(self) -> tuple[str, ...]:
        return tuple(served.path for served in self.served_files())

    def host_path(self, path: str) -> Path:
        """Where the host original of served ``path`` is, under the injectable roots."""
        host_path = BY_PATH[path].host_path
        if host_path.startswith("/proc/"):
            return self.roots.proc / host_path.removeprefix("/proc/")
        return self.roots.sys / host_path.removeprefix("/sys/")

    def host_content(self, path: str) -> bytes:
        where = self._host_paths.get(path)
        if where is None:
            where = self._host_paths[path] = str(self.host_path(path))
        return self.files.read(where)

    def render(self, path: str, pid: int) -> bytes:
        """The virtualized content, or an exception saying why there is none.

        Raises:
            KeyError: ``path`` is not served.
            ServeHost: the caller sees the host (host cgroup, option off, ...).
            ProcessGone: ``pid`` exited.
            CgroupUnavailable, CgroupDataError: unreadable or unparsable input.
        """
        return self._render(BY_PATH[path], pid, None)

    def _render(
        self,
        served: ServedFile,
        pid: int,
        cgroup_text: str | None,
        namespace: int | None = None,
    ) -> bytes:
        if not self.options.virtualize:
            raise ServeHost("virtualization is toggled off")
        return served.build(Request(self, pid, cgroup_text, namespace))

    def answer(self, path: str, pid: int) -> bytes:
        """What ``pid`` reads at ``path``: the view, or the host file when the view cannot
        be computed. Never raises for bad cgroup data or a vanished caller (only OSError
        when even the host file is unreadable).

        The caller's cgroups are read on every call; with a cache TTL, an answer computed
        for the same path, cgroups and pid namespace less than TTL seconds ago is
        returned as is.
        """
        return self.open_answer(path, pid)[0]

    def open_answer(self, path: str, pid: int) -> tuple[bytes, object]:
        """``answer``, and who it was for: a token to pass to ``reread`` (the caller's
        cgroups as read for this answer; None for a file that is the same for everyone)."""
        started = time.perf_counter()
        outcome = "host"
        try:
            content, outcome, caller = self._answer(path, pid)
        finally:
            self.metrics.request(path, outcome, time.perf_counter() - started)
        assert content is not None  # only a re-read finds its caller changed
        return content, caller

    def _caller_namespace(self, pid: int) -> int:
        """``pid``'s pid namespace, looked up once per process: a process never changes
        namespace, and the kept descriptor of its ``/proc/<pid>/cgroup`` (just read for
        this request) tells whether ``pid`` is still the process it was looked up for.
        Saves a readlink per request (~5 us; a tenth of a cached read's daemon time)."""
        since = self.pid_files.kept_since(f"{self._proc}/{pid}/cgroup")
        if since is not None:
            known = self._namespaces.get(pid)
            if known is not None and known[0] == since:
                return known[1]
        namespace = self.host.pid_namespace(pid)
        self._note_thread_group(pid)
        if since is not None:
            if len(self._namespaces) >= 2 * PID_FILES:
                self._namespaces.clear()
            self._namespaces[pid] = (since, namespace)
        return namespace

    def _note_thread_group(self, pid: int) -> None:
        """Remember the process of a caller that is one of its threads (FUSE gives the
        thread id), once per caller as its namespace: a file a worker thread opened is
        re-read for its process once that thread has exited."""
        if self._proc == "/proc":
            # A pidfd opens for a process's first thread only (EINVAL, or ENOENT since
            # Linux 6.9, for the others): a syscall of ~2 us where the status file costs
            # ~30 (on every request of short-lived readers such as `cat`).
            try:
                os.close(os.pidfd_open(pid))
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.ENOSYS):
                    return  # gone (ESRCH) or not ours to ask
            else:
                self._thread_groups.pop(pid, None)
                return
        try:
            group = parse_tgid(read_text(f"{self._proc}/{pid}/status", errors="replace"))
        except (OSError, ProcfsViewError):
            return  # gone, or a tree without Tgid lines (fixtures): nothing to remember
        if group == pid:
            self._thread_groups.pop(pid, None)
            return
        if len(self._thread_groups) >= 2 * PID_FILES:
            self._thread_groups.clear()
        self._thread_groups[pid] = group

    def is_host_caller(self, pid: int) -> bool:
        """Whether ``pid`` shares the daemon's pid namespace (the node's own processes:
        the liveness probe, the node's tools)."""
        try:
            return self._caller_namespace(pid) == self.inits.host_namespace()
        except (ProcfsViewError, OSError):
            return False

    def owner_of(self, pid: int) -> str:
        """``pid``'s cgroups (its ``/proc/<pid>/cgroup``), which the FUSE layer bounds open
        files by; "" for a process that is gone. Asked when the table is full, and for
        files that are the same for everyone (their answers read no cgroup)."""
        try:
            return read_cgroup_text(pid, self.roots.proc, self.pid_files.read)
        except (ProcfsViewError, OSError):  # ProcessGone among them
            return ""

    def reread(self, path: str, pid: int, caller: object) -> bytes | None:
        """``path`` afresh for an open file read again from its start: procps's ``free
        -s``, ``top`` and ``vmstat`` open /proc/meminfo and /proc/stat once and seek back
        to 0 for every refresh, as the kernel's files allow. ``pid`` opened it, ``caller``
        is what ``open_answer`` said. None when that process is gone or in other cgroups
        now (moved, or its pid reused by another container's process): the file keeps
        what it showed, never someone else's numbers nor the host's; None too for a path
        a reload (an upgrade) no longer serves, which the open file goes on showing."""
        if path not in BY_PATH:
            return None
        started = time.perf_counter()
        outcome = "host"
        try:
            same_caller = caller if isinstance(caller, str) else None
            content, outcome, _ = self._answer(path, pid, rereading=True, same_caller=same_caller)
            group = self._thread_groups.get(pid)
            if outcome == "exited" and group is not None:
                # The thread that opened it has exited; its process, in the same cgroups
                # (checked as for the thread), re-reads it (a monitor's other thread).
                content, outcome, _ = self._answer(
                    path, group, rereading=True, same_caller=same_caller
                )
        finally:
            self.metrics.request(path, outcome, time.perf_counter() - started)
        return content

    def _answer(
        self, path: str, pid: int, rereading: bool = False, same_caller: str | None = None
    ) -> tuple[bytes | None, str, str | None]:
        """``open_answer`` and how it went: ``view``, or why the host file was served
        (``host``, ``gone``, ``error``: the reasons the metrics count). ``rereading``
        for ``same_caller`` (None: a file that was the same for everyone) gives None (and
        ``kept``) unless the caller's cgroups are those."""
        served = BY_PATH[path]
        if not self._options.virtualize:
            # Whose it is still matters: a file opened now and re-read once the view is
            # back on (top, free -s) shows its opener's view again, not the host's forever.
            return self.host_content(path), "host", self.owner_of(pid) or None
        if served.host_only(self._options):  # the same for everyone: no cgroup to read
            content = self.rendered.get_or_compute((path, "", 0), lambda: self.host_content(path))
            return content, "host", None
        if rereading and same_caller is None:  # opened as the host file: whose view is it?
            return None, "kept", None
        key: tuple[str, str, int] | None = None
        cgroup_text = ""
        outcome = "view"
        try:
            cgroup_text = read_cgroup_text(pid, self.roots.proc, self.pid_files.read)
            if rereading and cgroup_text != same_caller:
                return None, "kept", None
            # Part of the key: the container is found through the namespace's init (its
            # uptime, and its cgroups for a caller below the init's), so callers in the
            # same cgroups but other pid namespaces may be other containers.
            namespace = self._caller_namespace(pid)
            if self.rendered.enabled:
                key = (path, cgroup_text, namespace)
                if served.aged is not None:
                    aged = self.rendered.get_aged(key)
                    if aged is not None:
                        return served.aged(*aged), "view", cgroup_text
                elif not (rereading and served.freshness == "reread"):
                    cached = self.rendered.get(key)
                    if cached is not None:
                        return cached, "view", cgroup_text
            content = self._render(served, pid, cgroup_text, namespace)
        except ServeHost:
            content, outcome = self.host_content(path), "host"
        except ProcessGone:
            if rereading:
                return None, "exited", None
            # Not cached: the host file is no answer for the cgroup this caller was in.
            log.debug("%s: caller pid %d exited; answering with the host file", path, pid)
            return self.host_content(path), "gone", None
        except ProcfsViewError as error:
            self._log_once.warning(
                (path, str(error)),
                "%s for pid %d in cgroup %s: %s; serving the host file",
                path,
                pid,
                describe_cgroup(cgroup_text),
                error,
            )
            content, outcome = self.host_content(path), "error"
        except Exception as error:  # a bug in a view must not take the mount down
            self._log_once.warning(
                (path, repr(error)),
                "%s for pid %d in cgroup %s: unexpected %r; serving the host file",
                path,
                pid,
                describe_cgroup(cgroup_text),
                error,
                exc_info=True,
            )
            content, outcome = self.host_content(path), "error"
        if key is not None:
            self.rendered.put(key, content)
        return content, outcome, cgroup_text
