"""Fault injection against a running daemon: every fault hits one caller, never the others.

Each test breaks something for one reader (it dies mid-read, its cgroup goes away, it
migrates, its /proc entry is unreadable, its cgroup file blocks or errors, it exhausts its
own fds, the daemon runs out of fds) and then checks that the daemon is alive and still
gives another container its own MemTotal. Faults that a real kernel cannot be made to
produce on demand run against a daemon pointed at a fixture tree (the hidden
``--proc-root``/``--cgroup-root``/``--sys-root`` flags), whose callers are real processes
registered in the fixture under their real pids.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cgroups import TestCgroup, test_cgroup
from tests.fixtures import FixtureHost
from tests.integration.helpers import (
    MIB,
    TIMEOUT,
    Daemon,
    StartDaemon,
    kill_started,
    meminfo_kb,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse]

#: Reads commands on stdin, one JSON answer per line: ``cat PATH`` (whole file or the
#: error), ``open PATH`` (open and read 32 bytes, keep the fd), ``rest`` (read the rest of
#: the kept fd), ``hold PATH N`` (open N times without closing), ``readall`` (read every
#: held fd, report distinct MemTotals).
READER = r"""
import json, os, sys
kept = None
head = b""
held = []
def answer(value):
    print(json.dumps(value), flush=True)
for line in sys.stdin:
    command, *args = line.split()
    try:
        if command == "cat":
            with open(args[0], "rb") as handle:
                answer({"ok": handle.read().decode()})
        elif command == "open":
            kept = os.open(args[0], os.O_RDONLY)
            head = os.read(kept, 32)
            answer({"ok": len(head)})
        elif command == "rest":
            rest = b""
            while chunk := os.read(kept, 64):
                rest += chunk
            os.close(kept)
            answer({"ok": (head + rest).decode()})
        elif command == "hold":
            for _ in range(int(args[1])):
                held.append(os.open(args[0], os.O_RDONLY))
            answer({"ok": len(held)})
        elif command == "readall":
            totals = set()
            for fd in held:
                for row in os.pread(fd, 4096, 0).splitlines():
                    if row.startswith(b"MemTotal:"):
                        totals.add(int(row.split()[1]))
            answer({"ok": sorted(totals)})
    except OSError as error:
        answer({"errno": error.errno})
"""


class Reader:
    """A long-lived reader process (in a cgroup, or wherever it was started)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, command: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Send ``command``; its answer, failing (not hanging) if none comes in time."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(command + "\n")
        stdin.flush()
        ready, _, _ = select.select([stdout], [], [], timeout)
        assert ready, f"reader {self.pid}: no answer to {command!r} within {timeout}s"
        line = stdout.readline()
        assert line, f"reader {self.pid} died answering {command!r}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def cat(self, path: Path) -> str:
        answer = self.ask(f"cat {path}")
        assert "ok" in answer, answer
        return str(answer["ok"])


READER_PIPES: dict[str, Any] = {
    "stdin": subprocess.PIPE,
    "stdout": subprocess.PIPE,
    "text": True,
}


@contextlib.contextmanager
def reader(cgroup: TestCgroup | None = None, nofile: int | None = None) -> Iterator[Reader]:
    """A ``Reader`` in ``cgroup`` (or here), with RLIMIT_NOFILE ``nofile`` if given."""
    argv = [sys.executable, "-c", READER]
    if nofile is not None:
        argv = ["prlimit", f"--nofile={nofile}:{nofile}", "--", *argv]
    process = (
        cgroup.spawn(argv, **READER_PIPES)
        if cgroup is not None
        else subprocess.Popen(argv, **READER_PIPES)
    )
    try:
        yield Reader(process)
    finally:
        kill_started(process)


def mem_total(text: str) -> int:
    return meminfo_kb(text, "MemTotal")


def assert_serves(daemon: Daemon, cgroup: TestCgroup, limit_kib: int) -> None:
    """The daemon is alive and gives ``cgroup`` its own MemTotal."""
    assert daemon.process.poll() is None, daemon.log()
    text = cgroup.run(["cat", str(daemon.path("proc/meminfo"))], timeout=TIMEOUT)
    assert mem_total(text) == limit_kib


@pytest.fixture
def no_cache_daemon(start_daemon: StartDaemon) -> Daemon:
    """Tests change cgroups and read again at once: no render cache."""
    return start_daemon(args=["--cache-ttl", "0"])


# -- real cgroups ----------------------------------------------------------------------------


def test_reader_killed_mid_read(no_cache_daemon: Daemon) -> None:
    daemon = no_cache_daemon
    with (
        test_cgroup(memory_limit=200 * MIB) as victim,
        test_cgroup(memory_limit=300 * MIB) as other,
    ):
        for _ in range(5):
            with reader(victim) as doomed:
                assert doomed.ask(f"open {daemon.path('proc/meminfo')}") == {"ok": 32}
                doomed.process.kill()  # dies holding a half-read handle
                doomed.process.wait(timeout=TIMEOUT)
        # A crowd that reads one byte of each file and exits (SIGPIPE mid-read).
        crowd = [
            victim.spawn(["head", "-c", "1", str(daemon.path(p))], stdout=subprocess.DEVNULL)
            for p in ("proc/meminfo", "proc/stat", "proc/cpuinfo", "proc/diskstats") * 8
        ]
        for process in crowd:
            process.wait(timeout=TIMEOUT)
        assert_serves(daemon, other, 300 * 1024)
        assert_serves(daemon, victim, 200 * 1024)
    assert "Traceback" not in daemon.log()


def test_cgroup_removed_between_open_and_read(no_cache_daemon: Daemon) -> None:
    """The handle keeps the snapshot taken at open; the next open answers for the cgroup
    the process is in now."""
    daemon = no_cache_daemon
    with test_cgroup(memory_limit=300 * MIB) as other, test_cgroup(memory_limit=384 * MIB) as home:
        with reader(home) as moving:
            with test_cgroup(memory_limit=128 * MIB) as doomed:
                doomed.attach(moving.pid)
                assert moving.ask(f"open {daemon.path('proc/meminfo')}") == {"ok": 32}
                home.attach(moving.pid)
                gone = list(doomed.directories.values())
            assert not any(path.exists() for path in gone)
            snapshot = moving.ask("rest")["ok"]
            assert mem_total(snapshot) == 128 * 1024
            assert mem_total(moving.cat(daemon.path("proc/meminfo"))) == 384 * 1024
        assert_serves(daemon, other, 300 * 1024)
    assert "Traceback" not in daemon.log()


def test_process_migrated_between_reads(no_cache_daemon: Daemon) -> None:
    daemon = no_cache_daemon
    meminfo = daemon.path("proc/meminfo")
    online = daemon.path("sys/devices/system/cpu/online")
    with (
        test_cgroup(memory_limit=160 * MIB, cpus="0") as first,
        test_cgroup(memory_limit=320 * MIB, cpus="1") as second,
        test_cgroup(memory_limit=300 * MIB) as other,
    ):
        with reader(first) as migrant:
            for _ in range(3):
                first.attach(migrant.pid)
                assert mem_total(migrant.cat(meminfo)) == 160 * 1024
                assert migrant.cat(online).strip() == "0"
                second.attach(migrant.pid)
                assert mem_total(migrant.cat(meminfo)) == 320 * 1024
                assert migrant.cat(online).strip() == "1"
        assert_serves(daemon, other, 300 * 1024)


def test_caller_that_exits_gets_no_one_elses_numbers(no_cache_daemon: Daemon) -> None:
    """Callers that exit right after open (their /proc/<pid> vanishes mid-request) never
    disturb the daemon; survivors keep their own numbers."""
    daemon = no_cache_daemon
    with (
        test_cgroup(memory_limit=200 * MIB) as short_lived,
        test_cgroup(memory_limit=300 * MIB) as other,
    ):
        # Each opens the file and is killed by the alarm at once, often mid-request.
        script = (
            "import os, signal, sys\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.0005)\n"
            "while True: open(sys.argv[1], 'rb').read()\n"
        )
        crowd = [
            short_lived.spawn([sys.executable, "-c", script, str(daemon.path("proc/meminfo"))])
            for _ in range(16)
        ]
        for process in crowd:
            process.wait(timeout=TIMEOUT)
        assert_serves(daemon, other, 300 * 1024)
        assert_serves(daemon, short_lived, 200 * 1024)
    assert "Traceback" not in daemon.log()


def test_ten_thousand_opens_without_close(no_cache_daemon: Daemon) -> None:
    """One process holds 10,000 open handles: its own limit is its problem; the others'
    reads, and the hoarder's handles, keep their right numbers."""
    daemon = no_cache_daemon
    count = 10_000

    with (
        test_cgroup(memory_limit=200 * MIB) as hoarding,
        test_cgroup(memory_limit=300 * MIB) as other,
    ):
        with reader(hoarding, nofile=count + 100) as hoarder:
            assert hoarder.ask(f"hold {daemon.path('proc/meminfo')} {count}") == {"ok": count}
            assert_serves(daemon, other, 300 * 1024)
            assert hoarder.ask("readall") == {"ok": [200 * 1024]}
            # Past its own limit the hoarder gets EMFILE from its kernel, nobody else does.
            answer = hoarder.ask(f"hold {daemon.path('proc/meminfo')} 200")
            assert answer == {"errno": 24}
            assert_serves(daemon, other, 300 * 1024)
        assert_serves(daemon, other, 300 * 1024)  # the handles went with the hoarder
    assert "Traceback" not in daemon.log()


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _prlimit_nofile(pid: int, limit: int) -> None:
    """Set the soft RLIMIT_NOFILE of ``pid`` (the hard limit stays, so it can go back up)."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:"], check=True)


def test_daemon_with_few_fds_keeps_serving(start_daemon: StartDaemon) -> None:
    """A daemon limited to 64 fds serves a crowd of concurrent readers (it holds no fd per
    open file); squeezed to no spare fd at all it answers with errors, never dies, and
    serves correctly again once fds are back."""
    daemon = start_daemon(args=["--cache-ttl", "0"])
    _prlimit_nofile(daemon.process.pid, 64)
    script = (
        "import sys\n"
        "totals = set()\n"
        "for _ in range(40):\n"
        "    handles = [open(sys.argv[1], 'rb') for _ in range(20)]\n"
        "    for h in handles:\n"
        "        totals.update(int(l.split()[1]) for l in h.read().splitlines()\n"
        "                      if l.startswith(b'MemTotal:'))\n"
        "        h.close()\n"
        "print(sorted(totals))\n"
    )
    with (
        test_cgroup(memory_limit=200 * MIB) as first,
        test_cgroup(memory_limit=300 * MIB) as second,
    ):
        crowd = [
            (
                cgroup,
                limit,
                cgroup.spawn(
                    [sys.executable, "-c", script, str(daemon.path("proc/meminfo"))],
                    stdout=subprocess.PIPE,
                    text=True,
                ),
            )
            for cgroup, limit in ((first, 200 * 1024), (second, 300 * 1024)) * 3
        ]
        for _, limit, process in crowd:
            out, _ = process.communicate(timeout=TIMEOUT * 3)
            assert process.returncode == 0
            assert out.strip() == f"[{limit}]"
        assert_serves(daemon, first, 200 * 1024)

        # No spare fd: the daemon cannot open a cgroup file, nor the host file.
        _prlimit_nofile(daemon.process.pid, _open_fds(daemon.process.pid))
        squeezed = first.run(
            [
                sys.executable,
                "-c",
                "import sys\n"
                "try:\n    open(sys.argv[1], 'rb').read(); print('read')\n"
                "except OSError as e:\n    print(e.errno)\n",
                str(daemon.path("proc/meminfo")),
            ]
        )
        assert squeezed.strip() in ("5", "24", "read")  # EIO, EMFILE, or the host file
        assert daemon.process.poll() is None, daemon.log()
        _prlimit_nofile(daemon.process.pid, 1024)
        assert_serves(daemon, first, 200 * 1024)
        assert_serves(daemon, second, 300 * 1024)


# -- a fixture tree: faults the kernel will not produce on demand ------------------------


@pytest.fixture
def fixture_daemon(start_daemon: StartDaemon, tmp_path: Path) -> tuple[Daemon, FixtureHost]:
    """A daemon serving from a v1 fixture tree; ``/ok`` is a healthy 256 MiB container."""
    host = FixtureHost(tmp_path / "tree", "v1")
    host.set_memory("/ok", 256 * MIB, 10 * MIB)
    host.set_cpu("/ok", "0", None, {0: (10**9, 10**9)})
    roots = host.roots()
    daemon = start_daemon(
        args=[
            "--cache-ttl",
            "0",
            "--proc-root",
            str(roots.proc),
            "--cgroup-root",
            str(roots.cgroup),
            "--sys-root",
            str(roots.sys),
        ]
    )
    return daemon, host


def _healthy_reader_serves(daemon: Daemon, host: FixtureHost) -> None:
    with reader() as healthy:
        host.add_process(healthy.pid, "/ok", namespace="ok", nspid=(healthy.pid, 1))
        text = healthy.cat(daemon.path("proc/meminfo"))
    assert mem_total(text) == 256 * 1024
    assert daemon.process.poll() is None, daemon.log()


def _fixture_host_meminfo(host: FixtureHost) -> str:
    return (host.proc / "meminfo").read_text()


@pytest.mark.parametrize("fault", ["missing", "directory", "dangling-symlink", "garbage"])
def test_unreadable_proc_entry_gets_the_host_file(
    fixture_daemon: tuple[Daemon, FixtureHost], fault: str
) -> None:
    daemon, host = fixture_daemon
    with reader() as broken:
        if fault != "missing":  # missing: the caller is not in the fixture's /proc at all
            host.add_process(broken.pid, "/ok")
            entry = host.proc / str(broken.pid) / "cgroup"
            entry.unlink()
            if fault == "directory":
                entry.mkdir()
            elif fault == "dangling-symlink":
                entry.symlink_to(host.base / "nowhere")
            else:
                entry.write_bytes(b"\xff\xfe garbage")
        assert broken.cat(daemon.path("proc/meminfo")) == _fixture_host_meminfo(host)
        _healthy_reader_serves(daemon, host)


@pytest.mark.parametrize("fault", ["fifo", "directory", "symlink-loop", "garbage", "huge"])
def test_cgroup_file_that_blocks_or_errors(
    fixture_daemon: tuple[Daemon, FixtureHost], fault: str
) -> None:
    """memory.stat replaced by a FIFO without writer (a read would block forever), a
    directory, a symlink loop, garbage, or 64 MiB: the caller gets the host file, quickly;
    everyone else keeps being served."""
    daemon, host = fixture_daemon
    host.set_memory("/bad", 128 * MIB, 10 * MIB)
    stat = host.cgroup_dir("memory", "/bad") / "memory.stat"
    stat.unlink()
    if fault == "fifo":
        os.mkfifo(stat)
    elif fault == "directory":
        stat.mkdir()
    elif fault == "symlink-loop":
        stat.symlink_to(stat)
    elif fault == "garbage":
        stat.write_bytes(b"\x00\xff" * 100)
    else:
        with stat.open("wb") as handle:
            handle.truncate(64 * MIB)
    with reader() as victim:
        host.add_process(victim.pid, "/bad", namespace="bad", nspid=(victim.pid, 1))
        started = time.monotonic()
        text = victim.cat(daemon.path("proc/meminfo"))
        assert time.monotonic() - started < 5
    # Its own numbers (an unreadable memory.stat counts as absent) or the host file when
    # the content is garbage; never another container's.
    assert text == _fixture_host_meminfo(host) or mem_total(text) == 128 * 1024
    if fault == "garbage":
        assert text == _fixture_host_meminfo(host)
    _healthy_reader_serves(daemon, host)
