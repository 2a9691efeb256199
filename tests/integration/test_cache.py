"""The daemon's rendered-file cache on a real mount: keyed by the caller's cgroups, which
are read on every request, so a process moved to another cgroup sees its new limits on
its very next read (the TTL bounds staleness of numbers, never whose numbers they are)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cgroups import test_cgroup
from tests.integration.helpers import MIB, TIMEOUT, Daemon, kill_started

pytestmark = [pytest.mark.root, pytest.mark.fuse]

# Reads MemTotal once per line on stdin and prints it.
READER = """
import sys
for _ in sys.stdin:
    with open(sys.argv[1], "rb") as handle:
        total = [l for l in handle.read().splitlines() if l.startswith(b"MemTotal:")]
    print(int(total[0].split()[1]), flush=True)
"""


def read_total(process: subprocess.Popen[str]) -> int:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n")
    process.stdin.flush()
    return int(process.stdout.readline())


def test_a_moved_process_gets_its_new_cgroup_on_the_next_read(mounted: Daemon) -> None:
    argv = [sys.executable, "-c", READER, str(mounted.path("proc/meminfo"))]
    with (
        test_cgroup(memory_limit=256 * MIB) as small,
        test_cgroup(memory_limit=384 * MIB) as large,
    ):
        process = small.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            # Twice in the small cgroup (the second read is served from the cache) ...
            assert [read_total(process), read_total(process)] == [256 * 1024, 256 * 1024]
            large.attach(process.pid)
            # ... and at once the large one's, though the small one's is still cached.
            assert read_total(process) == 384 * 1024
            small.attach(process.pid)
            assert read_total(process) == 256 * 1024
        finally:
            kill_started(process)
            process.wait(timeout=TIMEOUT)
