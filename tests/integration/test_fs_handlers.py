"""ViewFS handlers called directly, without a mount: the caller is fixed at open, every
offset comes from that snapshot, and no exception other than FUSEError ever escapes."""

from __future__ import annotations

import errno
import inspect
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pyfuse3
import pytest
import trio

from procfs_view import fs as fs_module
from procfs_view.fs import FILE_MODE, ViewFS

T = TypeVar("T")


@dataclass
class Ctx:
    """Stands in for pyfuse3.RequestContext (which cannot be built from Python)."""

    pid: int
    uid: int = 0
    gid: int = 0
    umask: int = 0o022


@dataclass
class FakeService:
    """Answers "<path> for <pid> #<n>" so tests can see who was asked, and how often."""

    paths: tuple[str, ...] = ("proc/meminfo", "proc/stat", "sys/devices/system/cpu/online")
    calls: list[tuple[str, int]] = field(default_factory=list)
    fail: BaseException | None = None

    def served_paths(self) -> tuple[str, ...]:
        return self.paths

    gone: set[int] = field(default_factory=set)  # pids whose re-reads keep the old content

    same_for_everyone: tuple[str, ...] = ()  # answered with no caller token

    def open_answer(self, path: str, pid: int) -> tuple[bytes, object]:
        self.calls.append((path, pid))
        if self.fail is not None:
            raise self.fail
        caller = None if path in self.same_for_everyone else ("caller", pid)
        return f"{path} for {pid} #{len(self.calls)}\n".encode(), caller

    host_callers: set[int] = field(default_factory=set)

    def is_host_caller(self, pid: int) -> bool:
        return pid in self.host_callers

    def owner_of(self, pid: int) -> object:
        return ("caller", pid)  # the same key as its answers' tokens, as the real service

    def reread(self, path: str, pid: int, caller: object) -> bytes | None:
        assert caller == ("caller", pid)
        if pid in self.gone:
            return None
        return self.open_answer(path, pid)[0]


def run(handler: Callable[..., Awaitable[T]], *args: Any) -> T:
    async def call() -> T:
        return await handler(*args)

    return trio.run(call)


def ctx(pid: int = 1234) -> pyfuse3.RequestContext:
    return cast(pyfuse3.RequestContext, Ctx(pid))


def lookup_path(fs: ViewFS, path: str) -> pyfuse3.EntryAttributes:
    inode = pyfuse3.ROOT_INODE
    attr = run(fs.getattr, inode, ctx())
    for part in path.split("/"):
        attr = run(fs.lookup, inode, part.encode(), ctx())
        inode = attr.st_ino
    return attr


def errno_of(handler: Callable[..., Awaitable[object]], *args: Any) -> int:
    with pytest.raises(pyfuse3.FUSEError) as caught:
        run(handler, *args)
    return caught.value.errno


def test_tree_is_built_from_served_paths() -> None:
    fs = ViewFS(FakeService())
    root = run(fs.getattr, pyfuse3.ROOT_INODE, ctx())
    assert stat.S_ISDIR(root.st_mode)
    assert stat.S_IMODE(root.st_mode) == 0o555
    online = lookup_path(fs, "sys/devices/system/cpu/online")
    assert online.st_mode == FILE_MODE
    assert stat.S_IMODE(lookup_path(fs, "sys/devices/system").st_mode) == 0o555
    assert run(fs.lookup, pyfuse3.ROOT_INODE, b".", ctx()).st_ino == pyfuse3.ROOT_INODE
    proc = lookup_path(fs, "proc")
    assert run(fs.lookup, proc.st_ino, b"..", ctx()).st_ino == pyfuse3.ROOT_INODE


def test_unknown_names_are_enoent() -> None:
    fs = ViewFS(FakeService())
    proc = lookup_path(fs, "proc")
    assert errno_of(fs.lookup, proc.st_ino, b"slabinfo", ctx()) == errno.ENOENT
    assert errno_of(fs.getattr, 9999, ctx()) == errno.ENOENT
    meminfo = lookup_path(fs, "proc/meminfo")
    assert errno_of(fs.lookup, meminfo.st_ino, b"x", ctx()) == errno.ENOTDIR


def test_caller_is_fixed_at_open_and_one_pass_reads_one_snapshot() -> None:
    service = FakeService()
    fs = ViewFS(service)
    inode = lookup_path(fs, "proc/meminfo").st_ino
    info = run(fs.open, inode, os.O_RDONLY, ctx(pid=42))
    assert info.direct_io
    assert not info.keep_cache
    content = b"proc/meminfo for 42 #1\n"
    assert run(fs.read, info.fh, 0, 5) == content[:5]
    assert run(fs.read, info.fh, 5, 3) == content[5:8]
    assert run(fs.read, info.fh, 8, 4096) == content[8:]
    assert run(fs.read, info.fh, len(content), 10) == b""
    assert service.calls == [("proc/meminfo", 42)]  # rendered once, at open
    # A stat says 0, as procfs does: the length of someone else's content would be wrong.
    assert run(fs.getattr, inode, ctx()).st_size == 0
    other = run(fs.open, inode, os.O_RDONLY, ctx(pid=7))
    assert run(fs.read, other.fh, 0, 4096) == b"proc/meminfo for 7 #2\n"
    run(fs.release, info.fh)
    run(fs.release, other.fh)
    assert fs.open_handles() == 0
    assert errno_of(fs.read, 12345, 0, 10) == errno.EBADF  # no handle we could have made


def test_a_read_from_the_start_again_renders_the_file_again_for_the_opener() -> None:
    """procps's free -s, top and vmstat open /proc/meminfo and /proc/stat once and seek
    back to 0 for every refresh: they must see new numbers, as from the kernel's files."""
    service = FakeService()
    fs = ViewFS(service)
    inode = lookup_path(fs, "proc/meminfo").st_ino
    info = run(fs.open, inode, os.O_RDONLY, ctx(pid=42))
    assert run(fs.read, info.fh, 0, 4096) == b"proc/meminfo for 42 #1\n"
    assert run(fs.read, info.fh, 23, 4096) == b""
    assert run(fs.read, info.fh, 0, 4096) == b"proc/meminfo for 42 #2\n"  # lseek(0), read
    assert run(fs.read, info.fh, 3, 4) == b"c/me"  # the rest of a pass: that snapshot
    assert service.calls == [("proc/meminfo", 42)] * 2
    # The opener is gone or in other cgroups now: the file keeps what it showed.
    service.gone.add(42)
    assert run(fs.read, info.fh, 0, 4096) == b"proc/meminfo for 42 #2\n"
    run(fs.release, info.fh)


def test_open_files_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each open holds its content in the daemon, whose memory is no container's: past the
    table's size only callers holding few files get more (one tenant's hoard must not make
    every other container's reads fail)."""
    monkeypatch.setattr(fs_module, "MAX_OPEN_FILES", 3)
    monkeypatch.setattr(fs_module, "FEW_OPEN_FILES", 1)
    service = FakeService()
    fs = ViewFS(service)
    inode = lookup_path(fs, "proc/stat").st_ino
    handles = [run(fs.open, inode, os.O_RDONLY, ctx()) for _ in range(3)]
    assert errno_of(fs.open, inode, os.O_RDONLY, ctx()) == errno.ENFILE
    newcomer = run(fs.open, inode, os.O_RDONLY, ctx(pid=7))  # holds none: still served
    assert errno_of(fs.open, inode, os.O_RDONLY, ctx(pid=7)) == errno.ENFILE
    calls = len(service.calls)
    assert errno_of(fs.open, inode, os.O_RDONLY, ctx()) == errno.ENFILE
    assert len(service.calls) == calls  # refused before anything was rendered for it
    monkeypatch.setattr(fs_module, "HARD_MAX_OPEN_FILES", 4)  # past it, everyone
    assert errno_of(fs.open, inode, os.O_RDONLY, ctx(pid=8)) == errno.ENFILE
    service.host_callers.add(9)  # but the node's own (the liveness probe)
    run(fs.release, run(fs.open, inode, os.O_RDONLY, ctx(pid=9)).fh)
    run(fs.release, handles[0].fh)
    run(fs.release, newcomer.fh)
    handles[0] = run(fs.open, inode, os.O_RDONLY, ctx())
    for info in handles:
        run(fs.release, info.fh)
    assert fs.open_handles() == 0


def test_one_caller_cannot_take_every_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant holding opens by the thousand gets ENFILE itself; other containers (and the
    liveness probe, a host caller) still open."""
    monkeypatch.setattr(fs_module, "MAX_OPEN_FILES_PER_CALLER", 2)
    fs = ViewFS(FakeService())
    inode = lookup_path(fs, "proc/stat").st_ino
    greedy = [run(fs.open, inode, os.O_RDONLY, ctx(pid=66)) for _ in range(2)]
    assert errno_of(fs.open, inode, os.O_RDONLY, ctx(pid=66)) == errno.ENFILE
    other = run(fs.open, inode, os.O_RDONLY, ctx(pid=7))
    assert run(fs.read, other.fh, 0, 4096).startswith(b"proc/stat for 7 ")
    run(fs.release, greedy[0].fh)
    greedy[0] = run(fs.open, inode, os.O_RDONLY, ctx(pid=66))
    for info in (*greedy, other):
        run(fs.release, info.fh)
    assert fs.open_handles() == 0


def test_a_file_the_same_for_everyone_is_counted_by_caller_past_a_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No cgroup is read to answer such a file, so whose open it is is asked only once a
    few are open; a hoard of them is then its caller's, as for any other file."""
    monkeypatch.setattr(fs_module, "MAX_OPEN_FILES", 2)
    monkeypatch.setattr(fs_module, "FEW_OPEN_FILES", 2)
    service = FakeService(same_for_everyone=("sys/devices/system/cpu/online",))
    fs = ViewFS(service)
    inode = lookup_path(fs, "sys/devices/system/cpu/online").st_ino
    held = [run(fs.open, inode, os.O_RDONLY, ctx(pid=66)) for _ in range(4)]
    assert errno_of(fs.open, inode, os.O_RDONLY, ctx(pid=66)) == errno.ENFILE
    other = run(fs.open, inode, os.O_RDONLY, ctx(pid=7))
    for info in (*held, other):
        run(fs.release, info.fh)
    assert fs.open_handles() == 0


def test_write_opens_and_changes_are_erofs() -> None:
    fs = ViewFS(FakeService())
    meminfo = lookup_path(fs, "proc/meminfo").st_ino
    proc = lookup_path(fs, "proc").st_ino
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_RDONLY | os.O_TRUNC):
        assert errno_of(fs.open, meminfo, flags, ctx()) == errno.EROFS
    info = run(fs.open, meminfo, os.O_RDONLY | os.O_APPEND, ctx())  # as /proc allows
    run(fs.release, info.fh)
    assert errno_of(fs.open, proc, os.O_RDONLY, ctx()) == errno.EISDIR
    assert errno_of(fs.write, 1, 0, b"x") == errno.EROFS
    assert errno_of(fs.mkdir, proc, b"d", 0o755, ctx()) == errno.EROFS
    assert errno_of(fs.unlink, proc, b"meminfo", ctx()) == errno.EROFS
    assert errno_of(fs.rename, proc, b"meminfo", proc, b"m", 0, ctx()) == errno.EROFS
    assert errno_of(fs.create, proc, b"new", 0o644, os.O_WRONLY, ctx()) == errno.EROFS


def test_unexpected_exception_becomes_eio_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    service = FakeService(fail=RuntimeError("view bug"))
    fs = ViewFS(service)
    inode = lookup_path(fs, "proc/stat").st_ino
    with caplog.at_level(logging.ERROR, logger="procfs_view.fs"):
        for _ in range(5):
            assert errno_of(fs.open, inode, os.O_RDONLY, ctx()) == errno.EIO
    # Rate-limited: one record for five identical failures.
    assert len([r for r in caplog.records if "open failed" in r.getMessage()]) == 1
    assert fs.open_handles() == 0


def test_oserror_from_the_service_becomes_eio() -> None:
    fs = ViewFS(FakeService(fail=PermissionError(errno.EACCES, "host file unreadable")))
    inode = lookup_path(fs, "proc/meminfo").st_ino
    assert errno_of(fs.open, inode, os.O_RDONLY, ctx()) == errno.EIO


def test_every_handler_goes_through_the_errno_boundary() -> None:
    handlers = [
        name
        for name, member in vars(ViewFS).items()
        if inspect.iscoroutinefunction(member) and name != "forget"
    ]
    assert {"lookup", "getattr", "open", "read", "release", "readdir"} <= set(handlers)
    for name in handlers:
        assert getattr(vars(ViewFS)[name], "__errno_boundary__", False), name


def test_set_service_keeps_inodes_and_open_handles() -> None:
    fs = ViewFS(FakeService())
    inode = lookup_path(fs, "proc/meminfo").st_ino
    info = run(fs.open, inode, os.O_RDONLY, ctx(pid=5))
    fs.set_service(FakeService(paths=("proc/meminfo", "proc/pressure/cpu")))
    assert lookup_path(fs, "proc/meminfo").st_ino == inode
    assert lookup_path(fs, "proc/pressure/cpu").st_mode == FILE_MODE
    proc = lookup_path(fs, "proc").st_ino
    assert errno_of(fs.lookup, proc, b"stat", ctx()) == errno.ENOENT
    assert run(fs.read, info.fh, 0, 100) == b"proc/meminfo for 5 #1\n"


def test_inode_numbers_depend_on_the_paths_only() -> None:
    """A successor daemon serving the same connection (sdnotify) must agree with the
    kernel's cached entries: the same path, the same inode, whatever the order."""
    paths = FakeService().paths
    one = ViewFS(FakeService(paths=paths))
    other = ViewFS(FakeService(paths=tuple(reversed(paths))))
    for path in ("proc", "proc/meminfo", "sys/devices/system/cpu/online"):
        assert lookup_path(one, path).st_ino == lookup_path(other, path).st_ino
    inodes = [node.inode for node in one.tree.nodes.values()]
    assert len(set(inodes)) == len(inodes)
    assert all(0 < inode < 1 << 16 for inode in inodes)


def test_a_file_opened_by_a_previous_daemon_is_served_to_its_opener() -> None:
    """After a restart on the same connection the kernel sends reads of handles the
    previous daemon made: the opener gets its own file afresh (re-read from 0 as usual),
    a process in other cgroups with that pid gets EIO."""
    key = b"shared by the daemons"
    before = ViewFS(FakeService(), key)
    inode = lookup_path(before, "proc/meminfo").st_ino
    info = run(before.open, inode, os.O_RDONLY, ctx(pid=42))
    same_file = run(before.open, inode, os.O_RDONLY, ctx(pid=42))
    assert same_file.fh != info.fh  # a second open by the thread: a handle of its own
    stat_info = run(before.open, lookup_path(before, "proc/stat").st_ino, 0, ctx(pid=42))

    assert errno_of(ViewFS(FakeService(), b"another key").read, info.fh, 0, 10) == errno.EIO
    service = FakeService()
    after = ViewFS(service, key)
    assert run(after.read, info.fh, 0, 4096) == b"proc/meminfo for 42 #1\n"
    assert run(after.read, info.fh, 0, 4096) == b"proc/meminfo for 42 #2\n"
    assert run(after.read, stat_info.fh, 0, 4096) == b"proc/stat for 42 #3\n"
    assert after.open_handles() == 2
    run(after.release, info.fh)
    run(after.release, stat_info.fh)
    assert after.open_handles() == 0
    assert errno_of(after.read, same_file.fh, 0, 10) == errno.EBADF  # a counter: unknown

    moved = FakeService()
    moved.open_answer = lambda path, pid: (b"someone else's", ("caller", pid + 1))  # type: ignore[method-assign]
    assert errno_of(ViewFS(moved, key).read, info.fh, 0, 10) == errno.EIO


def test_a_handle_says_what_was_opened_by_whom() -> None:
    fh = fs_module.handle_for(0xFFFF, (1 << 22) - 1, (1 << 26) - 1)
    assert fs_module.parse_handle(fh) == (0xFFFF, (1 << 22) - 1, (1 << 26) - 1)
    assert fs_module.parse_handle(fs_module.handle_for(7, 1, 0)) == (7, 1, 0)
    assert fs_module.handle_for(7, 1 << 22, 5) == 0  # no such pid: a counter instead
    assert fs_module.parse_handle(12345) is None
    digest = fs_module.token_digest
    assert digest(None, b"k") == 0
    assert digest("0::/a\n", b"k") == digest("0::/a\n", b"k") != 0
    assert digest("0::/a\n", b"k") != digest("0::/b\n", b"k")
    assert digest("0::/a\n", b"k") != digest("0::/a\n", b"other")
