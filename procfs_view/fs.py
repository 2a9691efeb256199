"""The pyfuse3 Operations: a read-only tree of the served paths, content rendered at open.

This layer knows nothing about meminfo or cgroups. It builds its directory tree from
``ViewService.served_paths()``, asks ``ViewService.open_answer(path, ctx.pid)`` at open
(``read`` gets no request context, so the caller must be identified at open) and serves
reads from that snapshot, so one pass over the file sees one consistent file. As with the
kernel's own files, a later read from offset 0 renders the file again (``reread``, for
the opener): procps's ``free -s``, ``top`` and ``vmstat`` keep /proc/meminfo and
/proc/stat open and seek back to 0 for every refresh.

Every handler goes through :func:`errno_boundary`: pyfuse3 lets handlers raise only
``FUSEError``; anything else escapes into ``pyfuse3.main()`` and takes the whole mount
down, for every container on the host.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import itertools
import logging
import os
import stat
import time
import zlib
from collections.abc import Callable, Coroutine, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, ParamSpec, Protocol, TypeVar

import pyfuse3
from pyfuse3 import FileHandleT, FileNameT, FlagT, InodeT, ModeT, XAttrNameT

from procfs_view import fuseloop
from procfs_view.logsetup import RateLimiter

log = logging.getLogger(__name__)

# LXCFS uses 0.5 s; our tree only changes on SIGUSR1 (and we invalidate then), so
# entries can be cached longer. Each lookup round trip costs a reader latency.
ENTRY_TIMEOUT = 5.0
ATTR_TIMEOUT = 1.0
FILE_MODE = stat.S_IFREG | 0o444
DIR_MODE = stat.S_IFDIR | 0o555
#: Opens refused with EROFS. O_APPEND alone is not among them: /proc takes a read-only
#: open with it (logging and shell tools pass it), and LXCFS does too.
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC
#: Open files at most, over all callers: each holds its content (a few KiB, a big host's
#: cpuinfo hundreds), and the daemon's memory is no container's, so a tenant holding a
#: million opens must not be able to grow it. Far above what readers hold at once.
MAX_OPEN_FILES = 65536
#: Open files at most for the callers in one set of cgroups (one container).
MAX_OPEN_FILES_PER_CALLER = 16384
#: A caller holding fewer open files than this gets its open even when the table is full:
#: one tenant's hoard cannot make every other container's reads (and the liveness
#: probe's) fail with ENFILE. A container's tools hold a few (top, free -s and vmstat two
#: each); the table can overrun by this much per container.
FEW_OPEN_FILES = 64
#: Past this everyone but the node's own callers is refused: callers in ever more cgroups
#: (sub-cgroups a tenant may make in a delegated subtree) cannot grow the table without
#: bound, FEW_OPEN_FILES each. (Such a tenant can still lock other tenants out.)
HARD_MAX_OPEN_FILES = 2 * MAX_OPEN_FILES
#: What the open files of a file that is the same for everyone (no cgroup read to tell
#: whose) count under, up to FEW_OPEN_FILES; past that their callers are asked for.
_SAME_FOR_EVERYONE = object()

#: A file handle says what was opened, by whom, for which cgroups, so that the next
#: daemon can serve a file its predecessor opened (the connection kept by systemd, see
#: sdnotify): inode << 48 | opener pid << 26 | caller digest. Inodes are below 2**16
#: (Tree), pids below 2**22 (the kernel's PID_MAX_LIMIT). A second open of the same file
#: by the same thread in the same cgroups gets a plain counter below 2**48 instead, which
#: a successor cannot serve.
HANDLE_INODE_SHIFT = 48
HANDLE_PID_BITS = 22
HANDLE_DIGEST_BITS = 26
#: Inode numbers: 2 + crc32(path) modulo this (collisions probed), the same in every
#: daemon serving the same paths, so the kernel's cached entries stay right for a successor.
INODE_SPACE = (1 << 16) - 2
#: Caller digests remembered (ViewFS._digest).
_DIGESTS_KEPT = 8192

P = ParamSpec("P")
R = TypeVar("R")

_unexpected = RateLimiter(interval=60.0)


class Service(Protocol):
    """What the filesystem needs from ``procfs_view.service.ViewService``."""

    def served_paths(self) -> tuple[str, ...]: ...

    def open_answer(self, path: str, pid: int) -> tuple[bytes, object]:
        """The content for ``pid``, and an opaque token of who that was for."""
        ...

    def reread(self, path: str, pid: int, caller: object) -> bytes | None:
        """The content afresh for the same caller, or None to keep what it had."""
        ...

    def is_host_caller(self, pid: int) -> bool:
        """Whether ``pid`` is the node's own (the daemon's pid namespace: its liveness
        probe, the node's tools), which no tenant's hoard may lock out."""
        ...

    def owner_of(self, pid: int) -> Hashable:
        """Who ``pid`` is for the per-caller bound (the same key as ``open_answer``'s
        tokens), asked when the table is full or the token was None (a file that is the
        same for everyone)."""
        ...


def errno_boundary(
    handler: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn any exception other than ``FUSEError`` into EIO, logged at most once a minute.

    Cancellation and KeyboardInterrupt are BaseExceptions and pass through untouched.
    """

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            key = f"{handler.__name__}:{type(exc).__name__}"
            suppressed = _unexpected.allow(key)
            if suppressed is not None:
                log.error(
                    "%s failed, answering EIO (%d similar errors suppressed)",
                    handler.__name__,
                    suppressed,
                    exc_info=True,
                )
            raise pyfuse3.FUSEError(errno.EIO) from exc

    wrapper.__errno_boundary__ = True  # type: ignore[attr-defined]
    return wrapper


@dataclass(slots=True)
class OpenFile:
    """One open: what it was opened as, by whom, and what it shows."""

    path: str
    pid: int
    caller: object
    owner: Hashable  # what the per-caller bound counts it under
    content: bytes
    read_before: bool = False  # a read from offset 0 then renders the file again


@dataclass
class Node:
    """One inode: a directory (``children``) or a served file (``path``)."""

    inode: InodeT
    path: str  # served path, "" for the root
    is_dir: bool
    parent: InodeT = pyfuse3.ROOT_INODE
    children: dict[bytes, InodeT] = field(default_factory=dict)


class Tree:
    """Inode table built from the served paths; inode numbers are stable across rebuilds."""

    def __init__(self) -> None:
        self.nodes: dict[InodeT, Node] = {}
        self._by_path: dict[str, InodeT] = {"": pyfuse3.ROOT_INODE}

    def build(self, served: Iterable[str]) -> None:
        """(Re)build the tree; a path that stays keeps its inode so kernel caches stay valid."""
        nodes: dict[InodeT, Node] = {}
        root = Node(pyfuse3.ROOT_INODE, "", is_dir=True, parent=pyfuse3.ROOT_INODE)
        nodes[root.inode] = root
        # Sorted: new paths get their inodes in the same order in every daemon serving the
        # same paths, so collisions are probed alike (Tree._inode_for).
        for served_path in sorted(served):
            parts = [p for p in served_path.split("/") if p]
            if not parts:
                raise ValueError(f"empty served path {served_path!r}")
            parent = root
            for depth, part in enumerate(parts, start=1):
                path = "/".join(parts[:depth])
                leaf = depth == len(parts)
                inode = self._inode_for(path)
                node = nodes.get(inode)
                if node is None:
                    node = Node(inode, path, is_dir=not leaf, parent=parent.inode)
                    nodes[inode] = node
                elif node.is_dir == leaf:
                    raise ValueError(f"served path {path!r} is both a file and a directory")
                parent.children[part.encode()] = inode
                parent = node
        self.nodes = nodes

    def _inode_for(self, path: str) -> InodeT:
        inode = self._by_path.get(path)
        if inode is None:
            taken = set(self._by_path.values())
            number = zlib.crc32(path.encode()) % INODE_SPACE
            while number + 2 in taken:
                number = (number + 1) % INODE_SPACE
            inode = InodeT(number + 2)
            self._by_path[path] = inode
        return inode

    def get(self, inode: InodeT) -> Node:
        node = self.nodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node


def token_digest(caller: object, key: bytes) -> int:
    """What a file handle keeps of an ``open_answer`` token (the caller's cgroups; None for
    a file that is the same for everyone): a keyed hash of its repr in HANDLE_DIGEST_BITS
    bits, the same in every daemon given the same ``key`` (``hash`` of a str is not), 0
    only for None. Keyed, so that no tenant naming its own cgroups (a delegated subtree)
    can make them collide with a neighbour's, as it could with a crc."""
    if caller is None:
        return 0
    digest = hashlib.blake2b(repr(caller).encode(), digest_size=4, key=key).digest()
    return int.from_bytes(digest, "little") & ((1 << HANDLE_DIGEST_BITS) - 1) or 1


def handle_for(inode: int, pid: int, digest: int) -> int:
    """The file handle of an open of ``inode`` by ``pid`` with a caller ``digest``
    (HANDLE_INODE_SHIFT); 0 when ``pid`` does not fit."""
    if not 0 < pid < 1 << HANDLE_PID_BITS:
        return 0
    return inode << HANDLE_INODE_SHIFT | pid << HANDLE_DIGEST_BITS | digest


def parse_handle(fh: int) -> tuple[int, int, int] | None:
    """(inode, pid, digest) of a handle made by ``handle_for``; None for a counter."""
    inode = fh >> HANDLE_INODE_SHIFT
    if inode == 0:
        return None
    pid = fh >> HANDLE_DIGEST_BITS & ((1 << HANDLE_PID_BITS) - 1)
    return inode, pid, fh & ((1 << HANDLE_DIGEST_BITS) - 1)


class ViewFS(pyfuse3.Operations):
    """Read-only FUSE filesystem serving ``service.open_answer(path, caller pid)``."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, service: Service, handle_key: bytes | None = None) -> None:
        """``handle_key``: the secret of the handles' caller digests (token_digest), shared
        with the daemons that serve this connection after us; random when not given."""
        super().__init__()
        self._handle_key = handle_key if handle_key is not None else os.urandom(16)
        self._digests: dict[object, int] = {}
        self.tree = Tree()
        self._service = service
        self.tree.build(service.served_paths())
        self._handles: dict[FileHandleT, OpenFile] = {}
        self._open_by_owner: dict[Hashable, int] = {}
        self._next_fh = itertools.count(1)
        self._mount_time_ns = time.time_ns()

    @property
    def service(self) -> Service:
        return self._service

    def set_service(self, service: Service) -> None:
        """Swap the service (SIGUSR1 reload); open handles keep their content until a read
        from offset 0 asks the new one."""
        old_nodes = self.tree.nodes
        self.tree.build(service.served_paths())
        self._service = service
        for inode, node in old_nodes.items():
            if inode == pyfuse3.ROOT_INODE:
                continue
            if inode not in self.tree.nodes:
                log.info("no longer serving %s", node.path)

    def open_handles(self) -> int:
        return len(self._handles)

    # -- attributes -------------------------------------------------------------------

    def _attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.inode
        attr.generation = 0
        attr.entry_timeout = ENTRY_TIMEOUT
        attr.attr_timeout = ATTR_TIMEOUT
        if node.is_dir:
            attr.st_mode = DIR_MODE
            attr.st_nlink = 2 + sum(
                1 for child in node.children.values() if self.tree.nodes[child].is_dir
            )
            attr.st_size = 0
        else:
            attr.st_mode = FILE_MODE
            attr.st_nlink = 1
            # 0, as procfs and sysfs report, which every tool reading /proc with read(2)
            # copes with (it reads to EOF; direct_io makes the kernel do so too; splice and
            # sendfile stop at the size since Linux 6.5: README "Known limits"). Each caller
            # gets its own content through one inode whose attributes the kernel caches,
            # so any length would be some other container's: Node's readFileSync would
            # stop there, tail would seek back from it, and a tenant would learn a
            # neighbour's CPU count.
            attr.st_size = 0
        attr.st_uid = 0
        attr.st_gid = 0
        attr.st_rdev = 0
        attr.st_blksize = 4096
        attr.st_blocks = 0
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = self._mount_time_ns
        return attr

    @errno_boundary
    async def lookup(
        self, parent_inode: InodeT, name: FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.tree.get(parent_inode)
        if not parent.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if name == b".":
            return self._attributes(parent)
        if name == b"..":
            return self._attributes(self.tree.get(parent.parent))
        inode = parent.children.get(name)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(self.tree.get(inode))

    @errno_boundary
    async def getattr(self, inode: InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attributes(self.tree.get(inode))

    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        """Nothing to do: the tree is static and small, inodes are never freed."""

    @errno_boundary
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_blocks = data.f_bfree = data.f_bavail = 0
        data.f_files = len(self.tree.nodes)
        data.f_ffree = data.f_favail = 0
        data.f_namemax = 255
        return data

    @errno_boundary
    async def access(self, inode: InodeT, mode: ModeT, ctx: pyfuse3.RequestContext) -> bool:
        # Only called without default_permissions (e.g. a custom -o); be as strict.
        self.tree.get(inode)
        return not mode & os.W_OK

    # -- files ------------------------------------------------------------------------

    @errno_boundary
    async def open(
        self, inode: InodeT, flags: FlagT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        node = self.tree.get(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        count = len(self._handles)
        owner: Hashable = _SAME_FOR_EVERYONE
        if count >= MAX_OPEN_FILES:  # full: only a caller holding few gets in, so ask first
            owner = self._service.owner_of(ctx.pid)
            if self._open_by_owner.get(owner, 0) >= FEW_OPEN_FILES or (
                count >= HARD_MAX_OPEN_FILES and not self._service.is_host_caller(ctx.pid)
            ):
                self._refuse(ctx.pid, count)  # before rendering anything for it
        content, caller = self._service.open_answer(node.path, ctx.pid)
        if caller is not None:
            owner = caller
        elif owner is _SAME_FOR_EVERYONE and self._open_by_owner.get(owner, 0) >= FEW_OPEN_FILES:
            owner = self._service.owner_of(ctx.pid)  # past a few: whose, as for any file
        held = self._open_by_owner.get(owner, 0)
        if held >= MAX_OPEN_FILES_PER_CALLER or (
            held >= FEW_OPEN_FILES and count >= MAX_OPEN_FILES
        ):
            self._refuse(ctx.pid, count)
        self._open_by_owner[owner] = held + 1
        fh = FileHandleT(handle_for(inode, ctx.pid, self._digest(caller)))
        if fh == 0 or fh in self._handles:
            fh = FileHandleT(next(self._next_fh))
        self._handles[fh] = OpenFile(node.path, ctx.pid, caller, owner, content)
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False, nonseekable=False)

    def _refuse(self, pid: int, count: int) -> NoReturn:
        suppressed = _unexpected.allow("open:ENFILE")
        if suppressed is not None:
            log.warning(
                "%d files open: refusing pid %d's cgroups more with ENFILE (they hold many, "
                "or the table is at its hard bound; %d refused since last said)",
                count,
                pid,
                suppressed,
            )
        raise pyfuse3.FUSEError(errno.ENFILE)

    def _digest(self, caller: object) -> int:
        """token_digest, remembered per token (a keyed hash costs ~3 us, a tenth of a
        cached open's time; the callers of a node are a few thousand cgroups at most)."""
        digest = self._digests.get(caller)
        if digest is None:
            if len(self._digests) >= _DIGESTS_KEPT:
                self._digests.clear()
            digest = self._digests[caller] = token_digest(caller, self._handle_key)
        return digest

    def _adopt(self, fh: FileHandleT) -> OpenFile:
        """A file the previous daemon opened on this connection (handle_for), rendered
        afresh for its opener if that process is still in the same cgroups."""
        parsed = parse_handle(fh)
        node = self.tree.nodes.get(InodeT(parsed[0])) if parsed is not None else None
        if parsed is None or node is None or node.is_dir:
            raise pyfuse3.FUSEError(errno.EBADF)
        _, pid, digest = parsed
        # Answered for whoever has that pid now, and kept only if it is in the cgroups the
        # file was opened in (the opener, or a process of the same container that got its
        # pid): never another container's numbers. A file that was the same for everyone
        # is the opener's own view, whatever it is now.
        content, caller = self._service.open_answer(node.path, pid)
        if digest != 0 and self._digest(caller) != digest:
            suppressed = _unexpected.allow("read:adopt")
            if suppressed is not None:
                log.warning(
                    "%s, opened by pid %d before a restart: that process is gone or in other "
                    "cgroups now; answering EIO (%d more since last said)",
                    node.path,
                    pid,
                    suppressed,
                )
            raise pyfuse3.FUSEError(errno.EIO)
        owner: Hashable = caller if caller is not None else _SAME_FOR_EVERYONE
        self._open_by_owner[owner] = self._open_by_owner.get(owner, 0) + 1
        handle = self._handles[fh] = OpenFile(node.path, pid, caller, owner, content)
        return handle

    @errno_boundary
    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        handle = self._handles.get(fh)
        if handle is None:
            handle = self._adopt(fh)
        if off == 0 and handle.read_before:
            content = self._service.reread(handle.path, handle.pid, handle.caller)
            if content is not None:
                handle.content = content
        handle.read_before = True
        return handle.content[off : off + size]

    @errno_boundary
    async def release(self, fh: FileHandleT) -> None:
        handle = self._handles.pop(fh, None)
        if handle is not None:
            left = self._open_by_owner[handle.owner] - 1
            if left > 0:
                self._open_by_owner[handle.owner] = left
            else:
                del self._open_by_owner[handle.owner]
        fuseloop.burst_ended()  # the reader is done with this file: no request is implied

    # -- directories ------------------------------------------------------------------

    @errno_boundary
    async def opendir(self, inode: InodeT, ctx: pyfuse3.RequestContext) -> FileHandleT:
        if not self.tree.get(inode).is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return FileHandleT(inode)

    @errno_boundary
    async def readdir(self, fh: FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        node = self.tree.get(InodeT(fh))
        # A snapshot sorted by name: start_id is the index of the next entry to return.
        # The kernel does not make up "." and ".." for FUSE (`ls -a` lists what we say).
        entries = [(b".", node.inode), (b"..", node.parent), *sorted(node.children.items())]
        for index in range(start_id, len(entries)):
            name, inode = entries[index]
            child = self.tree.nodes.get(inode)
            if child is None:
                continue
            if not pyfuse3.readdir_reply(token, name, self._attributes(child), index + 1):
                break

    @errno_boundary
    async def releasedir(self, fh: FileHandleT) -> None:
        return None

    # -- everything that would change the tree: read-only filesystem ------------------

    @errno_boundary
    async def setattr(
        self,
        inode: InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: FileHandleT | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def write(self, fh: FileHandleT, off: int, buf: bytes) -> int:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def create(
        self,
        parent_inode: InodeT,
        name: FileNameT,
        mode: ModeT,
        flags: FlagT,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def mknod(
        self,
        parent_inode: InodeT,
        name: FileNameT,
        mode: ModeT,
        rdev: int,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def mkdir(
        self, parent_inode: InodeT, name: FileNameT, mode: ModeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def unlink(
        self, parent_inode: InodeT, name: FileNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def rmdir(
        self, parent_inode: InodeT, name: FileNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def symlink(
        self,
        parent_inode: InodeT,
        name: FileNameT,
        target: FileNameT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def rename(
        self,
        parent_inode_old: InodeT,
        name_old: FileNameT,
        parent_inode_new: InodeT,
        name_new: FileNameT,
        flags: FlagT,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def link(
        self,
        inode: InodeT,
        new_parent_inode: InodeT,
        new_name: FileNameT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def setxattr(
        self, inode: InodeT, name: XAttrNameT, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    @errno_boundary
    async def removexattr(
        self, inode: InodeT, name: XAttrNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)
