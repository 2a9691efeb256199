"""Containers read at the same time and each gets its own numbers, never a neighbour's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cgroups import test_cgroup
from tests.integration.helpers import MIB, TIMEOUT, Daemon, kill_started

pytestmark = [pytest.mark.root, pytest.mark.fuse]

# Reads the file N times and prints every distinct MemTotal and CPU list it saw.
READER = """
import sys
meminfo, online, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
totals, cpus = set(), set()
for _ in range(rounds):
    with open(meminfo, "rb") as handle:
        for line in handle.read().splitlines():
            if line.startswith(b"MemTotal:"):
                totals.add(int(line.split()[1]))
    with open(online, "rb") as handle:
        cpus.add(handle.read().decode().strip())
print(sorted(totals), sorted(cpus))
"""


def test_two_cgroups_read_concurrently_get_their_own_numbers(mounted: Daemon) -> None:
    argv = [
        sys.executable,
        "-c",
        READER,
        str(mounted.path("proc/meminfo")),
        str(mounted.path("sys/devices/system/cpu/online")),
        "200",
    ]
    with (
        test_cgroup(memory_limit=256 * MIB, cpus="0") as small,
        test_cgroup(memory_limit=384 * MIB, cpus="1") as large,
    ):
        readers: list[tuple[str, subprocess.Popen[str]]] = []
        try:
            for _ in range(4):
                for label, cgroup in (("small", small), ("large", large)):
                    process = cgroup.spawn(argv, stdout=subprocess.PIPE, text=True)
                    readers.append((label, process))
            results: dict[str, set[str]] = {"small": set(), "large": set()}
            for label, process in readers:
                out, _ = process.communicate(timeout=TIMEOUT)
                assert process.returncode == 0
                results[label].add(out.strip())
        finally:
            for _, process in readers:
                kill_started(process)
    assert results["small"] == {"[262144] ['0']"}
    assert results["large"] == {"[393216] ['1']"}
