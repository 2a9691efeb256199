"""The daemon: lock the pidfile, prepare the mountpoint, mount, serve, react to signals, clean up.

Order matters: the pidfile lock is taken first, so a second instance fails before it can
touch the first one's mount; the mount goes away before the pidfile does, so a
successor never finds the lock free while our mount is still attached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import importlib
import logging
import math
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import cast

import pyfuse3
import trio

from procfs_view import fuseloop, remount, sdnotify
from procfs_view.cache import DEFAULT_TTL
from procfs_view.errors import ProcfsViewError
from procfs_view.fileio import DEFAULT_OPEN_FILES
from procfs_view.fs import ViewFS
from procfs_view.loadavg import LoadTracker, frozen_check
from procfs_view.metrics import PrometheusMetrics
from procfs_view.mountinfo import FSNAME, FSTYPE, LXCFS_FSTYPE, mounts_at, resolve_mountpoint
from procfs_view.options import DEFAULT_BUSY_POLL
from procfs_view.service import Roots, ViewOptions, ViewService

log = logging.getLogger(__name__)

DEFAULT_MOUNTPOINT = Path("/var/lib/lxcfs")
DEFAULT_RUNTIME_DIR = Path("/run")
PIDFILE_NAME = "procfs-view.pid"
#: The secret of the file handles' caller digests (fs.token_digest), in the runtime
#: directory (root's, a tmpfs: gone at reboot, as the connections it is for).
HANDLE_KEY_NAME = "procfs-view.key"
# A dead LXCFS mount at the same place is also ours to replace: we are its drop-in.
RECOVERABLE_FSTYPES = frozenset({FSTYPE, LXCFS_FSTYPE})
BASE_FUSE_OPTIONS = (
    f"fsname={FSNAME}",
    f"subtype={FSNAME}",
    "allow_other",
    "default_permissions",
    "ro",
)
# Our handlers never await (answer() is synchronous), so extra pyfuse3 worker tasks only
# add scheduling: one task measured 116 us per open+read+read+close vs 165 us with the
# default 99 (trivial content, this repo's benchmark machine). Raise it if handlers ever
# offload work to threads.
FUSE_WORKER_TASKS = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# SIGHUP reloads like SIGUSR1: admins send it to reload, and stopping on it would leave
# every container with dead binds under systemd's Restart=on-failure (we would exit 0).
RELOAD_SIGNALS = (signal.SIGUSR1, signal.SIGHUP)
#: Seconds from one reload to the next: a burst of reload signals (config management,
#: a loop of `systemctl reload`) is one or two reloads, not one per signal.
RELOAD_SPACING = 1.0
HANDLED_SIGNALS = (*STOP_SIGNALS, *RELOAD_SIGNALS, signal.SIGUSR2)
# On a reload every procfs_view module is imported afresh except these: the FUSE layer, the
# daemon and the load tracker hold the mount, the open handles and the load history;
# errors keeps exception identity.
NOT_RELOADED = frozenset(
    {"__init__", "__main__", "cli", "daemon", "errors", "fs", "fuseloop", "logsetup"}
)


class StartupError(ProcfsViewError):
    """The daemon cannot start; the message says why and what to do."""


class AlreadyServed(StartupError):
    """The mountpoint is served by a running procfs-view."""


@dataclass(frozen=True)
class DaemonConfig:
    """Everything ``run`` needs, as parsed by the command line."""

    mountpoint: Path = DEFAULT_MOUNTPOINT
    options: ViewOptions = field(default_factory=ViewOptions)
    pidfile: Path | None = None
    runtime_dir: Path = DEFAULT_RUNTIME_DIR
    fuse_options: tuple[str, ...] = ()
    debug: bool = False
    roots: Roots = field(default_factory=Roots)
    #: Seconds a rendered file (per path and caller cgroups) and host inputs may be reused;
    #: 0 computes every read afresh. See ViewService.
    cache_ttl: float = DEFAULT_TTL
    #: Seconds the FUSE loop busy-polls for the next request before sleeping (fuseloop).
    busy_poll: float = DEFAULT_BUSY_POLL
    #: Descriptors of cgroup and /proc files kept open for re-reading (fileio.OpenFiles).
    open_files: int = DEFAULT_OPEN_FILES
    #: ``HOST:PORT`` to serve Prometheus metrics at; None (the default) serves none.
    metrics_address: str | None = None
    #: Keep the FUSE connection in systemd's file descriptor store (sdnotify), so that the
    #: mount and open files outlive this process; also on when systemd sets $FDSTORE.
    fd_store: bool = False

    @property
    def pidfile_path(self) -> Path:
        return self.pidfile if self.pidfile is not None else self.runtime_dir / PIDFILE_NAME


# -- pidfile ---------------------------------------------------------------------------


class PidFile:
    """An fcntl-locked pidfile, like LXCFS's, except that losing the race never deletes it.

    The lock lives as long as our descriptor; if we are killed the kernel drops it and
    the next start takes over the stale file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StartupError(f"cannot open pidfile {self.path}: {exc.strerror}") from exc
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StartupError(
                    f"another procfs-view (pid {holder}) is running with pidfile {self.path};"
                    " not starting (stop it first, or use another --pidfile)"
                ) from exc
            raise StartupError(f"cannot lock pidfile {self.path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the file (only if it is still the one we locked) and drop the lock."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            ours = os.fstat(self._fd)
            current = os.stat(self.path)
            if (ours.st_dev, ours.st_ino) == (current.st_dev, current.st_ino):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


# -- mountpoint ------------------------------------------------------------------------


def absolute_mountpoint(path: Path) -> Path:
    """``resolve_mountpoint``, refusing ``/``: the daemon must never mount over it."""
    resolved = resolve_mountpoint(path)
    if resolved == resolved.parent:
        raise StartupError("refusing to mount over /")
    return resolved


def detach(path: Path) -> None:
    """Lazily unmount a dead mount (fusermount3 -uz, else umount -l)."""
    commands = [["fusermount3", "-u", "-z", str(path)], ["umount", "-l", str(path)]]
    errors: list[str] = []
    for argv in commands:
        if shutil.which(argv[0]) is None:
            errors.append(f"{argv[0]}: not installed")
            continue
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
        errors.append(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    raise StartupError(f"cannot detach the dead mount at {path}: {'; '.join(errors)}")


def _is_dead(path: Path) -> bool:
    """Whether the FUSE mount at ``path`` lost its daemon.

    statfs always goes to the daemon, unlike stat, which the kernel answers from its
    attribute cache for a while after the daemon died (a quick systemd restart).
    """
    try:
        os.statvfs(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def prepare_mountpoint(path: Path) -> frozenset[str]:
    """Make ``path`` an empty directory we can mount on, or explain why it cannot be; the
    types of the dead mounts detached there.

    A dead mount of ours ("Transport endpoint is not connected", left by a daemon that
    was killed) is detached; several may be stacked, hence the loop.
    """
    detached: set[str] = set()
    for _attempt in range(16):
        fstypes = mounts_at(path)
        visible = fstypes[-1] if fstypes else None
        if visible is not None and visible.startswith("fuse") and _is_dead(path):
            if visible not in RECOVERABLE_FSTYPES:
                raise StartupError(f"{path} is a dead {visible} mount, not ours; not touching it")
            log.warning("detaching the dead %s mount at %s (its daemon died)", visible, path)
            detach(path)
            detached.add(visible)
            continue
        if visible == FSTYPE:
            raise AlreadyServed(
                f"{path} is already served by a running procfs-view; not mounting twice"
            )
        try:
            info = os.stat(path)
        except FileNotFoundError:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StartupError(f"cannot create mountpoint {path}: {exc.strerror}") from exc
            return frozenset(detached)
        except OSError as exc:
            raise StartupError(f"cannot use mountpoint {path}: {exc.strerror}") from exc
        if not stat.S_ISDIR(info.st_mode):
            raise StartupError(f"mountpoint {path} exists and is not a directory")
        with os.scandir(path) as entries:
            if any(True for _ in entries):
                what = f"a {visible} mount" if visible else "a directory"
                raise StartupError(
                    f"mountpoint {path} is {what} that is not empty and not ours;"
                    " refusing to mount over it (choose an empty directory)"
                )
        return frozenset(detached)
    raise StartupError(f"{path} still shows a dead mount after detaching 16 of them")


def takes_over_from_lxcfs(mountpoint: Path, detached: frozenset[str]) -> bool:
    """Whether we serve where LXCFS did, so its dead binds in containers are ours to
    re-attach: at LXCFS's own mountpoint (a clean stop of LXCFS leaves no trace there), or
    where we just detached a dead LXCFS mount. Elsewhere (a second instance, a test) they
    are left alone."""
    return mountpoint == DEFAULT_MOUNTPOINT or LXCFS_FSTYPE in detached


def handle_key(runtime_dir: Path) -> bytes:
    """The key our file handles are made with, the same for every daemon of this boot (a
    successor serving the kept connection checks its predecessor's handles with it);
    made on first use, readable by root only. A random one when it cannot be kept (the
    successor then answers its predecessor's open files with EIO)."""
    path = runtime_dir / HANDLE_KEY_NAME
    try:
        key = path.read_bytes()
        if len(key) >= 16:
            return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot read %s: %s; open files will not outlive this daemon", path, exc)
        return os.urandom(32)
    key = os.urandom(32)
    try:
        runtime_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{HANDLE_KEY_NAME}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, key)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("cannot keep %s: %s; open files will not outlive this daemon", path, exc)
    return key


def fuse_options(config: DaemonConfig) -> set[str]:
    options = set(BASE_FUSE_OPTIONS)
    options.update(opt for opt in config.fuse_options if opt)
    return options


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft RLIMIT_NOFILE to ``wanted`` (at most the hard limit): the pool of
    kept cgroup-file descriptors sizes itself from it, and services start with a soft limit
    of 1024 (systemd) however many containers the host runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)


# -- reload ----------------------------------------------------------------------------


def _reloadable(name: str) -> bool:
    package, _, rest = name.partition(".")
    return package == "procfs_view" and bool(rest) and rest.split(".")[0] not in NOT_RELOADED


def fresh_service_module() -> ModuleType:
    """Import the view code again from disk, all of it, in dependency order.

    The old modules are dropped from ``sys.modules`` (not reloaded in place), so the
    running service keeps its own code until it is replaced, and a broken edit leaves
    everything as it was.
    """
    saved = {name: module for name, module in sys.modules.items() if _reloadable(name)}
    for name in saved:
        del sys.modules[name]
    importlib.invalidate_caches()
    try:
        return importlib.import_module("procfs_view.service")
    except BaseException:
        for name in [name for name in sys.modules if _reloadable(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
        for name, module in saved.items():
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, module)
        raise


# -- running ---------------------------------------------------------------------------


class Daemon:
    """The running state: the filesystem, its service, and what the signals do to them."""

    def __init__(
        self,
        config: DaemonConfig,
        fs: ViewFS,
        service: ViewService,
        loads: LoadTracker | None = None,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        self.config = config
        self.fs = fs
        self.service = service
        self.loads = loads
        self.metrics = metrics
        #: Whether the re-attach at start also takes dead LXCFS binds (takes_over_from_lxcfs).
        self.adopt_lxcfs = False
        if metrics is not None:
            # Read at scrape time from the current service, which a reload replaces.
            metrics.track("stat_counters", lambda: len(self.service.stat_states))
            metrics.track("rendered_cache", lambda: len(self.service.rendered))
            metrics.track_virtualization(lambda: self.service.options.virtualize)
            if loads is not None:
                metrics.track("loadavg", lambda: len(loads.cgroups))
                metrics.track_loadavg_round(lambda: loads.last_round_seconds)

    def toggle_virtualization(self) -> None:
        options = self.service.options
        self.service.options = dataclasses.replace(options, virtualize=not options.virtualize)
        state = "on" if self.service.options.virtualize else "off (serving host files)"
        log.info("SIGUSR2: virtualization %s", state)

    def _fresh_service(self) -> tuple[ViewService, ModuleType]:
        """Import the view code afresh and build a service from it (in a worker thread:
        ~150 ms of imports and cgroup discovery would hold every reader up)."""
        module = fresh_service_module()
        options = module.ViewOptions(**dataclasses.asdict(self.config.options))
        roots = module.Roots(**dataclasses.asdict(self.config.roots))
        service = module.ViewService(
            roots,
            options,
            load_source=self.loads,
            cache_ttl=self.config.cache_ttl,
            metrics=self.metrics,
            open_files=self.config.open_files,
        )
        return cast(ViewService, service), module

    async def reload(self, reason: str) -> None:
        """Build a new service from freshly imported view code; open handles keep theirs,
        and the /proc/stat counters carry over (a fresh start would make them jump back).

        ``reason`` (the signal's name) starts the log line, so an operator sees which
        signal did it.
        """
        try:
            service, module = await trio.to_thread.run_sync(
                self._fresh_service, abandon_on_cancel=True
            )
            # The rest here, in the FUSE loop's thread: the counters and the SIGUSR2 state
            # as they are now, not as when the build began.
            service.options = dataclasses.replace(
                service.options, virtualize=self.service.options.virtualize
            )
            service.stat_states.adopt(self.service.stat_states, module.StatState)
            service.disk_states.adopt(self.service.disk_states, module.DiskState)
            if self.loads is not None:  # the layout was discovered afresh
                self.loads.frozen = frozen_check(service.layout)
            self.fs.set_service(service)
        except Exception:
            log.exception("%s: reload failed, still serving with the previous code", reason)
            return
        self.service.close()
        self.service = service
        log.info("%s: reloaded the view code (%d paths)", reason, len(service.served_paths()))

    async def reload_when_asked(self, requests: trio.MemoryReceiveChannel[str]) -> None:
        """One reload per request, RELOAD_SPACING apart: requests that come in while one
        waits its turn are that one; one that comes in during a reload waits as one more
        (it may be for code changed after that import began)."""
        last = -math.inf
        async for reason in requests:
            await trio.sleep_until(last + RELOAD_SPACING)
            with contextlib.suppress(trio.WouldBlock):
                while True:
                    reason = requests.receive_nowait()
            last = trio.current_time()
            await self.reload(reason)

    async def handle_signals(
        self, reloads: trio.MemorySendChannel[str], *, task_status: trio.TaskStatus[None]
    ) -> None:
        with trio.open_signal_receiver(*HANDLED_SIGNALS) as receiver:
            # Blocked since before the mount (see run): anything that arrived in between
            # is delivered now, to trio's handler, instead of killing us mid-mount.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
            task_status.started()
            async for signum in receiver:
                if signum in STOP_SIGNALS:
                    log.info("%s: stopping", signal.Signals(signum).name)
                    pyfuse3.terminate()
                    return
                if signum in RELOAD_SIGNALS:
                    with contextlib.suppress(trio.WouldBlock):  # one is waiting already
                        reloads.send_nowait(signal.Signals(signum).name)
                elif signum == signal.SIGUSR2:
                    self.toggle_virtualization()

    async def reattach_binds(self) -> None:
        """Give containers whose binds died with a previous daemon fresh ones (issue 6).

        In a thread: each fresh bind is cloned by path through our own mount, which the
        FUSE loop in this thread must answer meanwhile.
        """
        mountpoint = absolute_mountpoint(self.config.mountpoint)
        try:
            await trio.to_thread.run_sync(
                remount.reattach_for_daemon,
                mountpoint,
                self.config.pidfile_path,
                self.service.served_paths(),
                self.adopt_lxcfs,
                abandon_on_cancel=True,
            )
        except Exception:
            log.exception("re-attaching the binds left by a previous daemon failed")

    async def serve(self) -> None:
        reloads, requests = trio.open_memory_channel[str](1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.reload_when_asked, requests)
            await nursery.start(self.handle_signals, reloads)
            nursery.start_soon(self.reattach_binds)
            if self.loads is not None:
                nursery.start_soon(self.loads.run)
            # Mounted, and requests are answered from the next line on: under systemd
            # (Type=notify) this is when the units ordered after us (containerd, docker,
            # lxc) may start their containers, whose binds need the files.
            sdnotify.notify("READY=1")
            with fuseloop.installed(self.config.busy_poll):
                await pyfuse3.main(min_tasks=1, max_tasks=FUSE_WORKER_TASKS)
            sdnotify.notify("STOPPING=1")
            # main() also returns when someone unmounts us; then stop listening too.
            nursery.cancel_scope.cancel()


def stored_connection(passed: dict[str, list[int]], mountpoint: Path) -> int | None:
    """The FUSE connection systemd kept for us from a previous daemon, if it still serves
    ``mountpoint``; every other descriptor it passed is closed.

    Nothing here may touch the mountpoint itself: its requests wait for us now."""
    found: int | None = None
    for name, fds in passed.items():
        for fd in fds:
            if found is None and name == sdnotify.FUSE_FD_NAME:
                if not sdnotify.is_live_fuse_connection(fd):
                    log.info("the FUSE connection systemd kept for us has ended")
                elif not fuseloop.can_adopt():
                    log.warning(
                        "this pyfuse3 cannot be handed a connection; ending the one systemd"
                        " kept (mounting afresh, as after a stop)"
                    )
                    sdnotify.unstore()
                else:
                    visible = mounts_at(mountpoint)
                    if visible and visible[-1] == FSTYPE:
                        found = fd
                        continue
                    # Unmounted by hand: binds in containers may still use it, but a new
                    # container could bind nothing; mount afresh (re-attach then serves them).
                    log.warning(
                        "the FUSE connection systemd kept for us no longer serves %s;"
                        " mounting afresh",
                        mountpoint,
                    )
                    sdnotify.unstore()
            os.close(fd)
    return found


def run(config: DaemonConfig) -> int:
    """Serve until SIGTERM/SIGINT (exit 0) or a startup failure (exit 1, reason logged)."""
    # First: systemd's descriptors are 3 and up, and a number we open might reuse one.
    passed = sdnotify.passed_fds()
    pidfile = PidFile(config.pidfile_path)
    try:
        mountpoint = absolute_mountpoint(config.mountpoint)
        pidfile.acquire()
    except StartupError as exc:
        log.error("%s", exc)
        for fd in [fd for fds in passed.values() for fd in fds]:
            os.close(fd)  # ours to drop; systemd keeps its own copies
        return 1
    try:
        return _run_locked(config, mountpoint, passed)
    finally:
        pidfile.release()


def _run_locked(config: DaemonConfig, mountpoint: Path, passed: dict[str, list[int]]) -> int:
    connection = stored_connection(passed, mountpoint)
    detached: frozenset[str] = frozenset()
    if connection is None:
        try:
            detached = prepare_mountpoint(mountpoint)
        except StartupError as exc:
            log.error("%s", exc)
            return 1
    # Kept when asked to, and always once systemd kept it for us: unmounting then would
    # end what it keeps for our successor.
    keep_connection = connection is not None or sdnotify.store_wanted(config.fd_store)
    loads = LoadTracker(config.roots.proc) if config.options.loadavg else None
    metrics = PrometheusMetrics() if config.metrics_address is not None else None
    raise_fd_limit(2 * config.open_files + 1024)
    service = ViewService(
        config.roots,
        config.options,
        load_source=loads,
        cache_ttl=config.cache_ttl,
        metrics=metrics,
        open_files=config.open_files,
    )
    if loads is not None:
        loads.frozen = frozen_check(service.layout)
    fs = ViewFS(service, handle_key(config.runtime_dir))
    daemon = Daemon(config, fs, service, loads, metrics)
    daemon.adopt_lxcfs = takes_over_from_lxcfs(mountpoint, detached)
    # Outside the signal task's receiver a SIGTERM (or SIGUSR1, SIGHUP) at its default
    # action would kill us with the mount attached: before it listens (mounting), and
    # after it stopped (a second stop or a reload while we unmount; trio also re-raises
    # what is still queued in the receiver when it closes). So they are ignored, and the
    # receiver puts that back when it closes; and blocked until it listens, so the ones
    # sent while we mount wait for it. Ignored by a handler that does nothing, not
    # SIG_IGN: setting SIG_IGN discards a pending signal, and trio sets SIGINT's action
    # to itself (its main-thread check) before its receiver listens, which lost a SIGINT
    # sent right after "serving". Blocked before any thread starts (the metrics
    # server's), which inherits the mask.
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, _ignore_signal)
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        if metrics is not None and config.metrics_address is not None:
            try:
                metrics.serve(config.metrics_address)
            except OSError as exc:
                log.error("cannot serve metrics at %s: %s", config.metrics_address, exc)
                return 1
        options = fuse_options(config)
        target = str(mountpoint)
        if connection is not None:
            target = fuseloop.adopt(connection).mountpoint
        try:
            pyfuse3.init(fs, target, options)
        except (RuntimeError, OSError) as exc:
            log.error("cannot mount at %s (options %s): %s", mountpoint, ",".join(options), exc)
            fuseloop.forget_adoption()
            return 1
        if connection is None and keep_connection:
            _store_connection()
        log.info(
            "serving %d files at %s (pid %d, %s%s)",
            len(service.served_paths()),
            mountpoint,
            os.getpid(),
            _describe(config),
            ", connection kept by systemd" if keep_connection else "",
        )
        status = 0
        try:
            trio.run(daemon.serve)
        except Exception:
            log.exception("the FUSE main loop failed")
            status = 1
        finally:
            remount.stop_workers()  # one hung in a container's namespace outlives its thread
            fuseloop.forget_adoption()
            pyfuse3.close(unmount=not keep_connection)
        if keep_connection:
            log.info(
                "left the mount at %s to systemd: a restart serves it on, a stop ends it",
                mountpoint,
            )
        else:
            log.info("unmounted %s", mountpoint)
        return status
    finally:
        # Ignored for good from here: at exit Python puts its handled signals back to
        # their default action, and a late stop signal would then kill the exiting daemon.
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _store_connection() -> None:
    """Hand systemd our new connection (and have it drop one it kept from before)."""
    fds = sdnotify.fuse_descriptors()
    if len(fds) != 1:
        log.warning("cannot tell libfuse's /dev/fuse descriptor among %s; not storing it", fds)
        return
    sdnotify.unstore()
    sdnotify.store(fds[0])


def _ignore_signal(signum: int, frame: object) -> None:
    """The action of the handled signals outside trio's receiver (see _run_locked)."""


def _describe(config: DaemonConfig) -> str:
    described = [f"{name}={value}" for name, value in dataclasses.asdict(config.options).items()]
    return ", ".join(
        [
            *described,
            f"cache_ttl={config.cache_ttl:g}s",
            f"busy_poll={config.busy_poll * 1e6:g}us",
            f"open_files={config.open_files}",
        ]
    )
