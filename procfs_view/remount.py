"""Re-attach containers' binds of our files after the daemon restarted (issue 6).

When a FUSE daemon dies, every bind of its files into a running container answers
ENOTCONN ("Transport endpoint is not connected") until the container restarts: the bind
holds the dead connection, and a new mount at the host's mount point does not reach
into the container's private mount namespace. So, once the fresh mount serves, we visit
every mount namespace on the host and replace each dead bind of ours, in place, with a
bind of the same file from the fresh mount.

Finding them (pure, see ``procfs_view.mountinfo`` and ``binds_to_check``): every process's
``/proc/<pid>/mountinfo``, one per (mount namespace, root directory) — a chrooted or
pivoted process sees its namespace's mounts relative to its own root, and only those
below it. The lowest pid of a view is read first; when it exits before we are in (once
pids wrap, that may be a short-lived reader of the container), up to two other
processes of the same view stand in for it. A bind is ours when its fstype is
``fuse.procfs-view`` and its source ``procfs-view``; field 4 (the root inside our
filesystem, e.g. ``/proc/meminfo``) names the file to bind again, field 5 the path to
bind it at, as that process sees it.

Dead or alive is decided inside the namespace, on the mount itself: ``fstatvfs`` on it
fails with ENOTCONN exactly when its FUSE connection lost its daemon (statfs always goes
to the daemon, unlike stat, which the kernel may answer from its cache). Device numbers
only say whose a bind is (``Scope``): the fresh mount's binds are fine already; a device
still mounted at another mount point of our namespace is another instance's, left to
its own restart; the devices of our predecessors are in a lineage file next to the
pidfile (``<pidfile>.devices``), and when no other instance is mounted on the host any
orphan (a device mounted nowhere any more) is ours too, which covers a lost runtime
directory. Mount points of whole filesystems (root ``/``) are re-attached only where
another namespace has a copy of our mount point at the same path; elsewhere they are
daemons' mount points, never taken over (``daemon.prepare_mountpoint`` replaces ours).

Replacing them (the syscalls, see ``_worker``): the classic ``mount(MS_BIND)`` cannot
take a source in another mount namespace (the kernel refuses a bind from a mount that
is not in the caller's namespace, and ``/proc/self/fd/N`` resolves through the
container's /proc, which may belong to another pid namespace or be absent), so we use
the new mount API through ``syscall(2)``:

1. in the daemon's namespace, ``open_tree(OPEN_TREE_CLONE)`` on the served file gives a
   detached bind, made read-only (plus the dead bind's nosuid/nodev/noexec/atime flags)
   with ``mount_setattr``;
2. a forked child (``setns(CLONE_NEWNS)`` is refused to a multithreaded process, and a
   child can be killed if it hangs), one per up to ``VIEWS_PER_WORKER`` namespaces taken
   in turn (a fork of the daemon cost ~19 ms a namespace, the work in it well under
   one), joins each target namespace with ``setns``, then
   ``fchdir`` + ``chroot`` to the root of the process we read the mountinfo of, so paths
   mean what they mean to the container and no binary of the container is needed;
3. there it checks the path still shows that very mount (``statx`` mount id) and that it
   is dead, then ``move_mount(MOVE_MOUNT_BENEATH)`` slides the fresh bind under the
   dead one and ``umount2(MNT_DETACH)`` removes the dead one, so readers never see the
   underlying host file in between. Where the kernel cannot slide it beneath (before
   6.5, and on any kernel for a locked bind: a namespace's copy made for a less
   privileged user namespace, as ``unshare -U -r -m`` in a container makes) the fresh
   bind is stacked on top of the dead one, which stays below it, hidden, pinning its
   dead connection (``STACKED``); only where that fails too is the dead one unmounted
   before the move.

The syscall numbers are the unified ones every architecture but alpha uses (since 5.2).
A namespace that vanished mid-way is skipped; a failure in one never stops the others.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import logging
import os
import resource
import select
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from procfs_view.mountinfo import (
    FSNAME,
    FSTYPE,
    LXCFS_FSNAME,
    LXCFS_FSTYPE,
    MountEntry,
    read_mountinfo,
)

log = logging.getLogger(__name__)

# A worker that has not answered by then is killed (a hung path lookup in a container).
WORKER_TIMEOUT = 10.0
#: Mount views one forked worker replaces the binds of, one after the other: a fork of
#: the daemon and its copy-on-write faults cost more than the work in one namespace.
VIEWS_PER_WORKER = 16

# -- mountinfo (pure) -------------------------------------------------------------------


def ours(entry: MountEntry) -> bool:
    """A mount of procfs-view's filesystem (ours or another instance's)."""
    return entry.fstype == FSTYPE and entry.source == FSNAME


def of_lxcfs(entry: MountEntry) -> bool:
    """A mount of LXCFS's filesystem: a node switched from LXCFS to us has containers
    whose binds of its files died with it, and we serve the same paths."""
    return entry.fstype == LXCFS_FSTYPE and entry.source == LXCFS_FSNAME


@dataclass(frozen=True)
class Bind:
    """A bind of ours at ``path`` (as its namespace sees it), of ``root`` in our fs."""

    mount_id: int
    path: str
    root: str
    device: tuple[int, int]
    options: frozenset[str]
    source: str = FSNAME  # whose filesystem: ours, or a dead LXCFS's (LXCFS_FSNAME)


def _visible(entries: list[MountEntry]) -> list[MountEntry]:
    """The mounts nothing is stacked on (another mount at the same point on top of them)."""
    covered = {
        parent.mount_id
        for parent in entries
        for child in entries
        if child.parent_id == parent.mount_id and child.mount_point == parent.mount_point
    }
    return [entry for entry in entries if entry.mount_id not in covered]


def fresh_device(entries: list[MountEntry], mountpoint: str) -> tuple[int, int] | None:
    """Device of our visible mount at ``mountpoint`` (the fresh one), if there is one."""
    for entry in _visible(entries):
        if ours(entry) and entry.mount_point == mountpoint:
            return entry.device
    return None


def foreign_devices(entries: list[MountEntry], mountpoint: str) -> frozenset[tuple[int, int]]:
    """Devices of procfs-view filesystems mounted at other mount points (other instances)."""
    return frozenset(
        entry.device
        for entry in entries
        if ours(entry) and entry.root == "/" and entry.mount_point != mountpoint
    )


@dataclass(frozen=True)
class Scope:
    """Which binds of ours this daemon may take over."""

    mountpoint: str  # our live mount, absolute in our namespace
    fresh: tuple[int, int]  # its device: binds from it are fine already
    foreign: frozenset[tuple[int, int]]  # mounted at other mount points: other instances'
    # Devices of our predecessors (the lineage file), or None to adopt any bind whose
    # filesystem is no longer mounted anywhere in our namespace (an orphan): right when we
    # are the only instance on the host, ambiguous when several run.
    lineage: frozenset[tuple[int, int]] | None
    # Files we serve (``/proc/meminfo``...) whose dead LXCFS binds we replace, unless of
    # an LXCFS still mounted in our namespace (``foreign`` has those devices too).
    lxcfs_roots: frozenset[str] = frozenset()
    # Only LXCFS's binds: they go in a pass after ours, so that a stopped or hung LXCFS
    # elsewhere (its binds answer nothing) holds up none of our own.
    lxcfs_only: bool = False


def binds_to_check(entries: list[MountEntry], scope: Scope, own_namespace: bool) -> list[Bind]:
    """Our visible binds that may be dead and are ours to replace.

    Files and directories bound anywhere qualify; a whole filesystem (root ``/``) only
    in another namespace and at our own mount point's path (that namespace's copy of our
    mount point): elsewhere it is some daemon's mount point, never ours to take over.
    Whether each is really dead is checked in its namespace (see the module docstring).
    Dead LXCFS binds of a file we serve qualify too (``scope.lxcfs_roots``); its other
    files and directories (``/proc/slabinfo``, ``/sys/devices/system/cpu``, its cgroup
    tree) are not ours to stand in for and stay as they are.
    """
    binds: list[Bind] = []
    for entry in _visible(entries):
        if of_lxcfs(entry):
            if entry.root in scope.lxcfs_roots and entry.device not in scope.foreign:
                binds.append(
                    Bind(
                        entry.mount_id,
                        entry.mount_point,
                        entry.root,
                        entry.device,
                        entry.options,
                        LXCFS_FSNAME,
                    )
                )
            continue
        if scope.lxcfs_only:
            continue
        if not ours(entry) or entry.device == scope.fresh or entry.device in scope.foreign:
            continue
        if scope.lineage is not None and entry.device not in scope.lineage:
            continue
        if entry.root == "/" and (own_namespace or entry.mount_point != scope.mountpoint):
            continue
        binds.append(
            Bind(entry.mount_id, entry.mount_point, entry.root, entry.device, entry.options)
        )
    return binds


# -- the lineage file -------------------------------------------------------------------

# Devices remembered: a bind may have missed a few restarts (its re-attach failed), but
# anonymous device numbers are reused once a filesystem is gone, so not too many.
LINEAGE_KEEP = 8


def lineage_path(pidfile: Path) -> Path:
    """Where the daemons of one pidfile record their mounts' devices (``<pidfile>.devices``).

    Next to the pidfile, so it outlives a crash, a stop and an upgrade just as the pidfile
    does (``/run`` under systemd; the node's /run/procfs-view in the DaemonSet).
    """
    return pidfile.with_name(f"{pidfile.name}.devices")


def parse_lineage(text: str) -> list[tuple[int, int]]:
    """``major:minor`` per line, oldest first; anything else is ignored."""
    devices: list[tuple[int, int]] = []
    for line in text.split():
        major, colon, minor = line.partition(":")
        if colon and major.isdigit() and minor.isdigit():
            devices.append((int(major), int(minor)))
    return devices


def read_lineage(path: Path) -> frozenset[tuple[int, int]]:
    try:
        return frozenset(parse_lineage(path.read_text()))
    except OSError:
        return frozenset()


def record_lineage(path: Path, device: tuple[int, int]) -> None:
    """Append our device (atomically replacing the file), keeping the last few."""
    try:
        known = parse_lineage(path.read_text())
    except OSError:
        known = []
    older = [known_device for known_device in known if known_device != device]
    kept = [*older[-(LINEAGE_KEEP - 1) :], device]
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text("".join(f"{major}:{minor}\n" for major, minor in kept))
    temporary.replace(path)


# -- the mount syscalls -----------------------------------------------------------------

CLONE_NEWNS = 0x00020000
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_STATX_DONT_SYNC = 0x4000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOVE_MOUNT_BENEATH = 0x00000200
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
STATX_MNT_ID = 0x1000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
_STATX_SIZE = 256
_STATX_MNT_ID_OFFSET = 144


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
# Resolved once here: the forked worker must not take the dynamic loader's locks.
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_statx = _libc.statx
_statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def open_tree_clone(path: Path) -> int:
    """A detached bind of ``path`` (in our namespace), as a close-on-exec fd."""
    return _check(
        _syscall(
            ctypes.c_long(SYS_OPEN_TREE),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC),
        ),
        "open_tree",
    )


def set_attributes(tree_fd: int, attr_set: int, attr_clr: int) -> None:
    attributes = _MountAttr(attr_set, attr_clr, 0, 0)
    _check(
        _syscall(
            ctypes.c_long(SYS_MOUNT_SETATTR),
            ctypes.c_int(tree_fd),
            ctypes.c_char_p(b""),
            ctypes.c_uint(AT_EMPTY_PATH),
            ctypes.byref(attributes),
            ctypes.c_size_t(ctypes.sizeof(attributes)),
        ),
        "mount_setattr",
    )


def move_mount(tree_fd: int, target: bytes, flags: int) -> None:
    _check(
        _syscall(
            ctypes.c_long(SYS_MOVE_MOUNT),
            ctypes.c_int(tree_fd),
            ctypes.c_char_p(b""),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(target),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | flags),
        ),
        "move_mount",
    )


def mount_id_of(fd: int) -> int:
    """The id of the mount ``fd`` is on (statx without asking a possibly dead daemon)."""
    buffer = ctypes.create_string_buffer(_STATX_SIZE)
    _check(_statx(fd, b"", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, buffer), "statx")
    return int.from_bytes(buffer.raw[_STATX_MNT_ID_OFFSET : _STATX_MNT_ID_OFFSET + 8], "little")


def attributes_for(options: frozenset[str]) -> tuple[int, int]:
    """mount_setattr (set, clear) keeping the dead bind's flags, always read-only."""
    attr_set = MOUNT_ATTR_RDONLY
    for name, flag in (
        ("nosuid", MOUNT_ATTR_NOSUID),
        ("nodev", MOUNT_ATTR_NODEV),
        ("noexec", MOUNT_ATTR_NOEXEC),
        ("nodiratime", MOUNT_ATTR_NODIRATIME),
    ):
        if name in options:
            attr_set |= flag
    attr_clr = 0
    for name, flag in (
        ("noatime", MOUNT_ATTR_NOATIME),
        ("strictatime", MOUNT_ATTR_STRICTATIME),
        ("relatime", MOUNT_ATTR_RELATIME),
    ):
        if name in options:
            attr_set |= flag
            attr_clr = MOUNT_ATTR__ATIME
            break
    return attr_set, attr_clr


# -- the worker inside a namespace ------------------------------------------------------

# Answers of the worker, one line per bind: "<index> <status> <errno>".
FIXED = "fixed"
STACKED = "stacked"  # fixed, on top of the dead bind (which stays below: see _replace)
ALIVE = "alive"  # not dead: nothing to do
CHANGED = "changed"  # the path no longer shows that mount: someone else changed it
FAILED = "failed"
GONE = "gone"  # the namespace or process vanished before we got in


#: What opening one more descriptor answers when the process or the system has none left.
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
#: What a move_mount the kernel cannot do here answers (too old, or not this mount).
_CANNOT = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


def _state(path: bytes, mount_id: int) -> str:
    """``dead``, ALIVE or CHANGED for the mount ``mount_id`` expected at ``path``."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return CHANGED
    try:
        if mount_id_of(fd) != mount_id:
            return CHANGED
        try:
            os.fstatvfs(fd)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                return "dead"
            raise
        return ALIVE
    finally:
        os.close(fd)


def _replace(path: bytes, mount_id: int, tree_fd: int) -> str:
    """Put the detached bind ``tree_fd`` in place of the dead mount at ``path``."""
    state = _state(path, mount_id)
    if state != "dead":
        return state
    try:
        move_mount(tree_fd, path, MOVE_MOUNT_BENEATH)
    except OSError as exc:
        if exc.errno not in _CANNOT:
            raise
        # Kernel < 6.5, or a mount it cannot slide under (a locked one, on any kernel):
        # stack the fresh bind on top of the dead one, which stays below it, hidden.
        # Detaching the dead one first would show the container the file beneath it (the
        # host's /proc/meminfo) until the move, and for good if the move failed.
        try:
            move_mount(tree_fd, path, 0)
        except OSError as stacked:
            if stacked.errno not in _CANNOT:
                raise
            _check(_umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW), "umount2")
            move_mount(tree_fd, path, 0)
        else:
            os.statvfs(path)  # the fresh bind answers
            return STACKED
    else:
        _check(_umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW), "umount2")
    os.statvfs(path)  # the fresh bind answers
    return FIXED


def _close_all_but(keep: set[int]) -> None:
    """The worker keeps no other descriptor (above all not /dev/fuse: if the daemon died
    while a worker hung, the connection would stay open and readers would hang)."""
    low = 3
    for fd in sorted(keep | {2**31 - 1}):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)


#: One mount view's part of a worker's work: its namespace and root, and per bind the
#: path, the dead mount's id and the detached fresh bind.
ViewJobs = tuple[int, int, list[tuple[bytes, int, int]]]


def _worker(views: list[ViewJobs], out: int) -> NoReturn:
    """The forked child: for each view in turn, enter its namespace and root, replace
    each bind, report ``<view> <bind> <status> <errno>`` per bind.

    Only syscalls and ``os.write`` here: no logging or import (another thread of the
    parent may have held their locks at fork time, and an import in the container's
    root would load the container's files). A ``setns`` resets the root to the entered
    namespace's, so the next view's ``fchdir`` + ``chroot`` start from there.
    """
    status = 0
    try:
        keep = {out}
        for ns_fd, root_fd, jobs in views:
            keep.update((ns_fd, root_fd, *(tree_fd for _, _, tree_fd in jobs)))
        _close_all_but(keep)
        for view_index, (ns_fd, root_fd, jobs) in enumerate(views):
            try:
                _check(_setns(ns_fd, CLONE_NEWNS), "setns")
                os.fchdir(root_fd)
                os.chroot(".")
                os.chdir("/")
            except OSError as exc:
                for index in range(len(jobs)):
                    os.write(out, f"{view_index} {index} {FAILED} {exc.errno or 0}\n".encode())
                continue
            for index, (path, mount_id, tree_fd) in enumerate(jobs):
                try:
                    answer = f"{view_index} {index} {_replace(path, mount_id, tree_fd)} 0\n"
                except OSError as exc:
                    answer = f"{view_index} {index} {FAILED} {exc.errno or 0}\n"
                os.write(out, answer.encode())
    except BaseException:  # the child must never return into the parent's code
        status = 1
    finally:
        os._exit(status)


# -- scanning and re-attaching ----------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A mount namespace as seen from one root directory, through one of its processes."""

    namespace: int  # inode of /proc/<pid>/ns/mnt
    # readlink of /proc/<pid>/root: never stat, which would ask the root's filesystem
    # (a hung FUSE root would hang us); distinct roots of one namespace read differently.
    root: str
    pid: int


@dataclass(frozen=True)
class Outcome:
    """What happened to one bind."""

    namespace: int
    pid: int
    path: str
    root: str
    status: str
    error: int = 0
    source: str = FSNAME

    def describe(self) -> str:
        text = f"mnt:[{self.namespace}] {self.path} (pid {self.pid}, {self.source}{self.root})"
        if self.error:
            return f"{text}: {self.status}: {os.strerror(self.error)}"
        if self.status == STACKED:
            return f"{text}: {STACKED} on the dead bind, which stays below it ({why_stacked()})"
        return f"{text}: {self.status}"


@functools.cache
def moves_beneath() -> bool:
    """Whether this kernel knows MOVE_MOUNT_BENEATH (6.5+): it answers an unknown flag
    with EINVAL before looking at anything else, so a call with no valid source tells."""
    result = _syscall(
        ctypes.c_long(SYS_MOVE_MOUNT),
        ctypes.c_int(-1),
        ctypes.c_char_p(b""),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(b""),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_BENEATH),
    )
    return result == 0 or ctypes.get_errno() not in (errno.EINVAL, errno.ENOSYS)


def why_stacked() -> str:
    """Why a bind was stacked rather than slid beneath the dead one, for its log line."""
    if not moves_beneath():
        return "this kernel has no MOVE_MOUNT_BENEATH (Linux < 6.5)"
    return "MOVE_MOUNT_BENEATH refused: a locked bind, as in a nested user namespace"


#: Processes of one mount view tried in turn when the one we picked exits before we are in.
VIEW_ATTEMPTS = 3


def views(proc: Path = Path("/proc"), only: tuple[int, str] | None = None) -> Iterator[View]:
    """One process per (mount namespace, root), or with ``only`` every process of that one
    view; processes that exit meanwhile are skipped."""
    seen: set[tuple[int, str]] = set()
    with os.scandir(proc) as entries:
        pids = sorted(int(entry.name) for entry in entries if entry.name.isdigit())
    for pid in pids:
        try:
            namespace = os.stat(proc / str(pid) / "ns" / "mnt").st_ino
            root = os.readlink(proc / str(pid) / "root")
        except OSError:
            continue  # exited, a zombie, or a kernel thread without a root
        key = (namespace, root)
        if only is not None:
            if key == only:
                yield View(namespace, root, pid)
        elif key not in seen:
            seen.add(key)
            yield View(namespace, root, pid)


def _stand_ins(view: View, proc: Path) -> Iterator[View]:
    """``view``, then (when its process exits before we are in: the lowest pid of a
    container may be a short-lived reader once pids wrap) up to ``VIEW_ATTEMPTS - 1`` other
    processes of the same mount view."""
    yield view
    others = (other for other in views(proc, (view.namespace, view.root)) if other != view)
    for _, other in zip(range(VIEW_ATTEMPTS - 1), others, strict=False):
        yield other


#: Forked workers not yet reaped: a daemon stopping while one hangs in a namespace
#: abandons the thread waiting for it, and kills them with ``stop_workers``.
_workers: set[int] = set()


def stop_workers() -> None:
    """SIGKILL the workers still running (our own children, by pid)."""
    for pid in list(_workers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _run_worker(
    views: list[View], work: list[ViewJobs]
) -> tuple[dict[tuple[int, int], tuple[str, int]], bool]:
    """Fork one worker for ``work`` (one entry per view), collect its answers by (view,
    bind) index, and say whether it timed out. Missing answers: it failed, or hung past
    ``WORKER_TIMEOUT`` without an answer (then it is killed; the caller redoes the views
    after the one it hung in)."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _worker(work, write_end)
    _workers.add(pid)
    os.close(write_end)
    data = b""
    timed_out = False
    deadline = time.monotonic() + WORKER_TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            ready = select.select([read_end], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                timed_out = True
                answered = data.count(b"\n")
                hung = views[min(len(views) - 1, _view_of(work, answered))]
                log.error("re-attach in mnt:[%d] (pid %d) timed out", hung.namespace, hung.pid)
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
            deadline = time.monotonic() + WORKER_TIMEOUT  # progress: the next view's turn
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # our own child, by pid; gone already if it finished
        os.waitpid(pid, 0)
        _workers.discard(pid)
    answers: dict[tuple[int, int], tuple[str, int]] = {}
    for line in data.decode().splitlines():
        if line.count(" ") != 3:
            continue  # a line cut short by the kill
        view_index, index, status, error = line.split()
        answers[(int(view_index), int(index))] = (status, int(error))
    return answers, timed_out


def _view_of(work: list[ViewJobs], answered: int) -> int:
    """The index of the view the ``answered``-th answer (from 0) belongs to."""
    for view_index, (_, _, jobs) in enumerate(work):
        if answered < len(jobs):
            return view_index
        answered -= len(jobs)
    return len(work)


def _open_view(view: View, proc: Path) -> tuple[int, int] | None:
    """Descriptors of the view's namespace and root, checked to be the ones scanned; None
    when its process is gone (out of descriptors is raised: the process is not gone)."""
    base = proc / str(view.pid)
    try:
        ns_fd = os.open(base / "ns" / "mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _OUT_OF_DESCRIPTORS:
            raise
        return None
    try:
        root_fd = os.open(base / "root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        os.close(ns_fd)
        if exc.errno in _OUT_OF_DESCRIPTORS:
            raise
        return None
    try:
        same = os.fstat(ns_fd).st_ino == view.namespace and os.readlink(base / "root") == view.root
    except OSError:
        same = False
    if not same:
        os.close(ns_fd)  # the pid was reused by another process
        os.close(root_fd)
        return None
    return ns_fd, root_fd


@dataclass
class _Prepared:
    """A view ready for a worker: its namespace and root open, a fresh detached bind per
    dead-looking bind of ours (``trees``, in the order of ``binds``), and the outcomes
    of binds that got no fresh one (``failed``)."""

    view: View
    ns_fd: int
    root_fd: int
    binds: list[Bind]
    trees: list[int]
    failed: list[Outcome]

    def close(self) -> None:
        for fd in (*self.trees, self.ns_fd, self.root_fd):
            os.close(fd)


def _outcome(view: View, bind: Bind, status: str, error: int = 0) -> Outcome:
    return Outcome(view.namespace, view.pid, bind.path, bind.root, status, error, bind.source)


def _prepare_view(view: View, binds: list[Bind], mountpoint: Path, proc: Path) -> _Prepared | None:
    """Open ``view`` and a fresh bind for each of ``binds``; None when its process is
    gone before we are in."""
    opened = _open_view(view, proc)
    if opened is None:
        return None
    prepared = _Prepared(view, *opened, [], [], [])
    try:
        for bind in binds:
            source = mountpoint / bind.root.lstrip("/")
            try:
                tree_fd = open_tree_clone(source)
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    raise  # not this bind's fault: the caller frees the batch's and retries
                prepared.failed.append(_outcome(view, bind, FAILED, exc.errno or 0))
                continue
            prepared.binds.append(bind)
            prepared.trees.append(tree_fd)
            with contextlib.suppress(OSError):  # before 5.12: the clone stays as ro as ours
                set_attributes(tree_fd, *attributes_for(bind.options))
    except BaseException:
        prepared.close()
        raise
    return prepared


def _fix_views(batch: list[_Prepared]) -> list[Outcome]:
    """Replace the binds of every view in ``batch`` through as few forked workers as
    possible: one, unless it hangs in a view (that view's unanswered binds fail, and a
    new worker takes the views after it). The views' descriptors are closed."""
    outcomes: list[Outcome] = []
    try:
        remaining = [prepared for prepared in batch if prepared.trees]
        for prepared in batch:
            outcomes.extend(prepared.failed)
        while remaining:
            work = [
                (
                    prepared.ns_fd,
                    prepared.root_fd,
                    [
                        (os.fsencode(bind.path), bind.mount_id, tree)
                        for bind, tree in zip(prepared.binds, prepared.trees, strict=True)
                    ],
                )
                for prepared in remaining
            ]
            try:
                answers, timed_out = _run_worker([prepared.view for prepared in remaining], work)
            except OSError as exc:  # no pipe or no fork (out of descriptors or memory)
                outcomes.extend(
                    _outcome(prepared.view, bind, FAILED, exc.errno or 0)
                    for prepared in remaining
                    for bind in prepared.binds
                )
                break
            missing = (FAILED, errno.ETIMEDOUT if timed_out else errno.ECHILD)
            redo: list[_Prepared] = []
            for view_index, prepared in enumerate(remaining):
                got = [answers.get((view_index, index)) for index in range(len(prepared.binds))]
                outcomes.extend(
                    _outcome(prepared.view, bind, *(answer or missing))
                    for bind, answer in zip(prepared.binds, got, strict=True)
                )
                if any(answer is None for answer in got):
                    # The worker stopped here (hung past WORKER_TIMEOUT, or died): what it
                    # did not answer failed, and a new worker takes the views after it.
                    redo = remaining[view_index + 1 :]
                    break
            remaining = redo
    finally:
        for prepared in batch:
            prepared.close()
    return outcomes


def _prepare(
    first: View,
    scope: Scope,
    own_namespace: int,
    mountpoint: Path,
    proc: Path,
    queued: frozenset[int] | set[int] = frozenset(),
) -> _Prepared | list[Outcome]:
    """``first``'s mount view ready for a worker, or its outcomes without one (none when
    it has no bind of ours; "gone" when its processes exit before we are in): through
    another of its processes when the one picked exits first. Mounts in ``queued`` are
    left out: another view of the same namespace (a chroot in it) has them already, and
    mount ids are unique on the host."""
    gone: list[Outcome] = []
    for view in _stand_ins(first, proc):
        try:
            entries = read_mountinfo(proc / str(view.pid) / "mountinfo")
        except OSError:
            continue  # exited since
        binds = binds_to_check(entries, scope, view.namespace == own_namespace)
        binds = [bind for bind in binds if bind.mount_id not in queued]
        if not binds:
            return []
        prepared = _prepare_view(view, binds, mountpoint, proc)
        if prepared is not None:
            return prepared
        gone = [_outcome(view, bind, GONE) for bind in binds]
    return gone


def served_files(mountpoint: Path) -> frozenset[str]:
    """Every file under our live mount, as mountinfo roots (``/proc/meminfo``)."""
    found: set[str] = set()
    pending = [mountpoint]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        found.add("/" + str(Path(entry.path).relative_to(mountpoint)))
        except OSError as exc:
            log.warning("re-attach: cannot list %s: %s", directory, exc)
    return frozenset(found)


def _descriptor_budget() -> int:
    """Descriptors a batch of views may hold: an eighth of what we may open (the daemon
    serves from the same table), at least enough for one view's binds."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, soft // 8) if soft != resource.RLIM_INFINITY else 4096


def reattach(
    mountpoint: Path,
    lineage_file: Path | None = None,
    record: bool = False,
    proc: Path = Path("/proc"),
    lxcfs: bool = False,
    served: frozenset[str] | None = None,
) -> list[Outcome]:
    """Replace every dead bind of our files, in every mount namespace, from ``mountpoint``.

    ``mountpoint`` is our live mount, as an absolute path in our namespace. Binds whose
    device is in ``lineage_file`` are ours; when no other procfs-view instance is
    mounted in our namespace, so is any orphan (the lineage is lost when the runtime
    directory is, e.g. in a pod without a hostPath /run). With ``record`` our own device
    is added to the file first (the daemon does; ``procfs-view remount`` does not). With
    ``lxcfs`` (we serve where LXCFS did), dead LXCFS binds of the files we serve too.
    ``served``: the files we serve as mountinfo roots, given by the serving daemon, which
    then asks nothing of its own mount that it can avoid (no statfs, no listing): a
    ``kill -9`` while one of its threads waits on its own answer leaves it unkillable.

    Returns one outcome per candidate bind (fixed, alive, changed, gone or failed), each
    also logged; nothing raises for one namespace's sake.
    """
    started = time.monotonic()
    own = read_mountinfo(proc / "self" / "mountinfo")
    fresh = fresh_device(own, str(mountpoint))
    if fresh is None:
        raise OSError(errno.ENOENT, f"no {FSTYPE} mount at {mountpoint}")
    if served is None:
        try:
            os.statvfs(mountpoint)
        except OSError as exc:
            raise OSError(exc.errno, f"{mountpoint} is not served: {exc.strerror}") from exc
    lineage = read_lineage(lineage_file) if lineage_file is not None else frozenset()
    if record and lineage_file is not None:
        try:
            record_lineage(lineage_file, fresh)
        except OSError as exc:
            log.warning("cannot record our device in %s: %s", lineage_file, exc)
    foreign = foreign_devices(own, str(mountpoint))
    # An LXCFS mounted here keeps its binds (alive, or dead at a mount it still has); one
    # that is gone never re-attaches its binds, so those we serve the files of are ours.
    lxcfs_mounted = frozenset(
        entry.device for entry in own if of_lxcfs(entry) and entry.root == "/"
    )
    scope = Scope(str(mountpoint), fresh, foreign | lxcfs_mounted, None if not foreign else lineage)
    scopes = [scope]
    if lxcfs:
        scopes.append(
            dataclasses.replace(
                scope,
                lxcfs_roots=served if served is not None else served_files(mountpoint),
                lxcfs_only=True,
            )
        )
    if foreign:
        log.info(
            "re-attach: other procfs-view instances are mounted here; only binds of %s",
            f"devices {sorted(lineage)}" if lineage else "our predecessors (none recorded)",
        )
    own_namespace = os.stat(proc / "self" / "ns" / "mnt").st_ino
    outcomes: list[Outcome] = []
    namespaces: set[tuple[int, int]] = set()
    scanned = 0

    def note(found: list[Outcome]) -> None:
        for result in found:
            # CHANGED is someone else's doing (or a fresh bind propagated from a peer
            # namespace we fixed first): worth a line, not a warning.
            level = logging.WARNING if result.status == FAILED else logging.INFO
            if result.status != ALIVE or log.isEnabledFor(logging.DEBUG):
                log.log(level, "re-attach: %s", result.describe())
            namespaces.add((result.namespace, result.pid))
        outcomes.extend(found)

    batch: list[_Prepared] = []
    queued: set[int] = set()
    held = 0  # descriptors the batch holds: a worker's views are all open at once
    budget = _descriptor_budget()
    unreadable = 0

    def flush() -> None:
        nonlocal batch, held
        if batch:
            note(_fix_views(batch))
        batch, held = [], 0

    for scope in scopes:
        for first in views(proc):
            scanned += scope is scopes[0]  # the same views again in the LXCFS pass
            try:
                try:
                    prepared = _prepare(first, scope, own_namespace, mountpoint, proc, queued)
                except OSError as exc:
                    if exc.errno not in _OUT_OF_DESCRIPTORS or not batch:
                        raise
                    flush()  # out of descriptors: the batch's go back first
                    prepared = _prepare(first, scope, own_namespace, mountpoint, proc, queued)
            except OSError as exc:
                unreadable += 1
                log.error(
                    "re-attach in mnt:[%d] (pid %d) failed: %s", first.namespace, first.pid, exc
                )
                continue
            if isinstance(prepared, list):
                note(prepared)
                continue
            batch.append(prepared)
            queued.update(bind.mount_id for bind in prepared.binds)
            held += 2 + len(prepared.trees)
            if len(batch) >= VIEWS_PER_WORKER or held >= budget:
                flush()
        flush()
    # Always logged: the one line saying the daemon's re-attach is over.
    log.info(
        "re-attach done: %d dead binds replaced (%d stacked), %d failed, in %d of %d mount"
        " views, %.0f ms%s",
        sum(1 for result in outcomes if result.status in (FIXED, STACKED)),
        sum(1 for result in outcomes if result.status == STACKED),
        sum(1 for result in outcomes if result.status == FAILED),
        len(namespaces),
        scanned,
        (time.monotonic() - started) * 1000,
        f"; {unreadable} mount views could not be read" if unreadable else "",
    )
    return outcomes


def reattach_for_daemon(
    mountpoint: Path, pidfile: Path, served_paths: Sequence[str], lxcfs: bool = False
) -> list[Outcome]:
    """The daemon's call once its mount serves ``served_paths``: record our device, then
    re-attach (with ``lxcfs``, dead LXCFS binds of our files too: we serve where LXCFS
    did)."""
    served = frozenset("/" + path.strip("/") for path in served_paths)
    return reattach(mountpoint, lineage_path(pidfile), record=True, lxcfs=lxcfs, served=served)
