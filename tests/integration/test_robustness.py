"""Callers that misbehave or vanish never stop the daemon from serving everyone else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cgroups import test_cgroup
from tests.integration.helpers import MIB, TIMEOUT, Daemon, kill_started, meminfo_kb

pytestmark = [pytest.mark.root, pytest.mark.fuse]

# Opens meminfo on "open", reads the rest on "rest" (then re-opens), exits on EOF.
STEPPED_READER = """
import os, sys
path = sys.argv[1]
fd = None
for command in sys.stdin:
    command = command.strip()
    if command == "open":
        fd = os.open(path, os.O_RDONLY)
        head = os.read(fd, 32)
        print(len(head), flush=True)
    elif command == "rest":
        rest = b""
        while chunk := os.read(fd, 64):
            rest += chunk
        os.close(fd)
        print((head + rest).decode().replace("\\n", "|"), flush=True)
        with open(path) as again:
            print(again.read().replace("\\n", "|"), flush=True)
    elif command == "hold":
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 10)
        print("holding", flush=True)
"""


def assert_still_serving(daemon: Daemon) -> None:
    assert daemon.process.poll() is None, daemon.log()
    text = daemon.path("proc/meminfo").read_text()
    assert meminfo_kb(text, "MemTotal") > 0


def _stepped(argv_path: Path) -> list[str]:
    return [sys.executable, "-c", STEPPED_READER, str(argv_path)]


def test_reader_killed_mid_read_leaves_the_daemon_serving(mounted: Daemon) -> None:
    with test_cgroup(memory_limit=256 * MIB) as cgroup:
        reader = cgroup.spawn(
            _stepped(mounted.path("proc/meminfo")),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert reader.stdin is not None
            assert reader.stdout is not None
            reader.stdin.write("hold\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == "holding"
            reader.kill()  # dies holding a half-read handle; the kernel releases it
            reader.wait(timeout=TIMEOUT)
        finally:
            kill_started(reader)
        assert_still_serving(mounted)
        # A crowd of readers that stop after one byte and exit.
        crowd = [
            cgroup.spawn(["head", "-c", "1", str(mounted.path(name))], stdout=subprocess.DEVNULL)
            for name in ("proc/meminfo", "proc/stat", "proc/cpuinfo", "proc/uptime") * 8
        ]
        for process in crowd:
            process.wait(timeout=TIMEOUT)
        assert cgroup.run(["cat", str(mounted.path("proc/meminfo"))]).startswith("MemTotal:")
        text = cgroup.run(["cat", str(mounted.path("proc/meminfo"))])
        assert meminfo_kb(text, "MemTotal") == 262144
    assert_still_serving(mounted)
    assert "Traceback" not in mounted.log()


def test_cgroup_removed_while_its_file_is_open(mounted: Daemon) -> None:
    """The open handle keeps the snapshot of the removed cgroup; the next open answers
    for the cgroup the process is in now; nobody else notices."""
    reader = subprocess.Popen(
        _stepped(mounted.path("proc/meminfo")),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdin is not None
        assert reader.stdout is not None
        with test_cgroup(memory_limit=384 * MIB) as survivor:
            with test_cgroup(memory_limit=128 * MIB) as doomed:
                doomed.attach(reader.pid)
                reader.stdin.write("open\n")
                reader.stdin.flush()
                assert reader.stdout.readline().strip() == "32"
                survivor.attach(reader.pid)
                doomed_dirs = list(doomed.directories.values())
            assert not any(path.exists() for path in doomed_dirs), "cgroup was not removed"
            reader.stdin.write("rest\n")
            reader.stdin.flush()
            snapshot = reader.stdout.readline().rstrip("\n").replace("|", "\n")
            reopened = reader.stdout.readline().rstrip("\n").replace("|", "\n")
            assert meminfo_kb(snapshot, "MemTotal") == 131072
            assert meminfo_kb(reopened, "MemTotal") == 393216
            reader.stdin.close()
            assert reader.wait(timeout=TIMEOUT) == 0
    finally:
        kill_started(reader)
    assert_still_serving(mounted)
