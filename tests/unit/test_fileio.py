"""The pool of kept descriptors (procfs_view.fileio.OpenFiles): a kept descriptor re-reads
what a fresh open would, never stale content, and keeping them never costs a read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from procfs_view.fileio import OpenFiles, filesystems_by_device, read_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def blocked_signals(status: bytes) -> bytes:
    return status.split(b"SigBlk:")[1].split()[0]


def test_proc_files_are_kept_and_reread_afresh() -> None:
    pool = OpenFiles()
    before = pool.read("/proc/self/status")
    assert len(pool) == 1
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        # The kept descriptor shows the file as it is now, like a fresh open.
        after = pool.read("/proc/self/status")
        assert len(pool) == 1
        assert blocked_signals(after) != blocked_signals(before)
        assert blocked_signals(after) == blocked_signals(read_bytes("/proc/self/status"))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    pool.close()
    assert len(pool) == 0


def test_a_file_printed_record_by_record_is_read_whole() -> None:
    """The kernel stops a read of such a file (cpuinfo: a record per CPU; diskstats, maps)
    at the first record that does not fit its page-sized buffer, so a short read is not
    its end: a kept descriptor once served a 16-CPU host's cpuinfo three CPUs at a time,
    i.e. only those three. A sleeping child's maps (a record per mapping, several pages,
    unchanging) shows what a re-read through the kept descriptor returns."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import decimal, json, sqlite3, ssl; print(1, flush=True); "
         "import time; time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"1\n"
        path = f"/proc/{child.pid}/maps"
        expected = read_bytes(path)
        assert len(expected) > 3 * 4096
        pool = OpenFiles()
        for _ in range(3):  # the first read opens, the others pread the kept descriptor
            assert pool.read(path) == expected
        assert len(pool) == 1
        assert pool.read(path, limit=100) == expected[:100]
        pool.close()
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


def test_regular_files_are_never_kept(tmp_path: Path) -> None:
    """A regular file can be replaced under a kept descriptor (fixture trees are): read it
    afresh every time."""
    path = tmp_path / "memory.limit_in_bytes"
    path.write_text("1\n")
    pool = OpenFiles()
    assert pool.read(str(path)) == b"1\n"
    assert len(pool) == 0
    replacement = tmp_path / "new"
    replacement.write_text("2\n")
    replacement.rename(path)
    assert pool.read(str(path)) == b"2\n"
    path.unlink()
    with pytest.raises(FileNotFoundError):
        pool.read(str(path))


def test_an_exited_process_fails_as_an_open_would() -> None:
    pool = OpenFiles()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    path = f"/proc/{child.pid}/cgroup"
    assert pool.read(path) == read_bytes(path)
    assert len(pool) == 1
    assert child.stdin is not None
    child.stdin.close()
    child.wait()
    with pytest.raises(FileNotFoundError):  # ESRCH from the kept one, then ENOENT on open
        pool.read(path)
    assert len(pool) == 0


def test_at_most_capacity_descriptors_are_kept() -> None:
    pool = OpenFiles(capacity=3)
    paths = ["/proc/self/status", "/proc/self/stat", "/proc/self/cgroup", "/proc/uptime"]
    for path in paths:
        pool.read(path)
    assert len(pool) == 3
    pool.read(paths[1])  # the least recently read is what goes
    pool.read(paths[0])
    assert len(pool) == 3
    pool.close()


def test_capacity_zero_keeps_nothing() -> None:
    pool = OpenFiles(capacity=0)
    assert pool.read("/proc/uptime")
    assert len(pool) == 0


def test_idle_descriptors_are_closed_at_a_later_read() -> None:
    clock = Clock()
    pool = OpenFiles(idle_seconds=60, clock=clock)
    pool.read("/proc/self/status")
    clock.now = 61.0
    for _ in range(1024):
        pool.read("/proc/uptime")
    assert len(pool) == 1  # only /proc/uptime, read just now
    pool.close()


def test_running_out_of_descriptors_gives_the_kept_ones_back() -> None:
    """With the descriptor table full (of kept files, or of anything), files are still read:
    the kept descriptors are closed to make room."""
    script = textwrap.dedent(
        """
        import os, resource
        from procfs_view.fileio import OpenFiles
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
        pool = OpenFiles()
        pool.capacity = 10_000  # more than the limit allows: the kept files fill the table
        paths = [f"/proc/{'./' * index}self/stat" for index in range(100)]  # one file, 100 keys
        reads = sum(1 for path in paths if pool.read(path).startswith(str(os.getpid()).encode()))
        print(reads, len(pool) < 40)
        fillers = []
        try:
            while True:
                fillers.append(os.open("/proc/self/stat", os.O_RDONLY))
        except OSError:
            pass
        print(len(pool) > 0, pool.read("/proc/self/comm") != b"", len(pool) <= 1)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
    ).stdout
    assert out.split() == ["100", "True", "True", "True", "True"]


def test_the_filesystems_of_proc_and_sys_are_known() -> None:
    kinds = filesystems_by_device()
    assert kinds[os.stat("/proc/self/status").st_dev] == "proc"
    assert kinds.get(os.stat("/sys/devices/system/cpu/online").st_dev) == "sysfs"


def test_a_kept_proc_descriptor_says_whether_it_is_still_the_same_process() -> None:
    """The service keys what it knows of a pid (its pid namespace) on the descriptor kept
    for /proc/<pid>/cgroup: the same while the process lives, gone once it exits."""
    files = OpenFiles(capacity=8)
    child = subprocess.Popen(["sleep", "60"])
    path = f"/proc/{child.pid}/cgroup"
    try:
        files.read(path)
        first = files.kept_since(path)
        assert first is not None
        files.read(path)
        assert files.kept_since(path) == first
    finally:
        child.kill()
        child.wait()
    with pytest.raises(FileNotFoundError):  # reopened after ESRCH: no such pid now
        files.read(path)
    assert files.kept_since(path) is None
    files.close()
