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


# Moves itself between the cgroups' memory directories (argv[2], argv[3]) before each
# read, alternately, 1000 times; prints every MemTotal it read, in order.
HOPPER = """
import sys
path, procs = sys.argv[1], sys.argv[2:]
totals = []
for index in range(1000):
    with open(procs[index % 2], "w") as handle:
        handle.write("0")  # 0: the writing process itself
    with open(path, "rb") as handle:
        totals.append(int(handle.read().split(b"\\n", 1)[0].split()[1]))
print(" ".join(map(str, totals)))
"""


def test_two_cgroups_read_alternately_1000_times_each_get_their_own(mounted: Daemon) -> None:
    """One process hopping between two cgroups, reading meminfo in each: 1000 answers from
    the daemon's defaults (rendered-file cache, kept descriptors, busy-poll), each with its
    current cgroup's MemTotal, never the other's cached file."""
    with (
        test_cgroup(memory_limit=200 * MIB) as first,
        test_cgroup(memory_limit=300 * MIB) as second,
    ):
        procs = [str(cgroup.directory("memory") / "cgroup.procs") for cgroup in (first, second)]
        out = first.run([sys.executable, "-c", HOPPER, str(mounted.path("proc/meminfo")), *procs])
    totals = [int(total) for total in out.split()]
    assert totals == [200 * 1024, 300 * 1024] * 500
