"""Per-caller answers through a real mount: the cgroup's numbers inside, the host's outside."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.cgroups import TestCgroup, test_cgroup
from tests.integration.helpers import (
    MIB,
    TIMEOUT,
    Daemon,
    StartDaemon,
    host_meminfo_kb,
    kill_started,
    meminfo_kb,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse]

LIMITED = {"memory_limit": 256 * MIB, "cpus": "0", "cfs": (50_000, 100_000)}


@pytest.fixture
def limited() -> Iterator[TestCgroup]:
    """The issue's test container: 256 MiB, cpuset 0, CFS quota 50000/100000."""
    with test_cgroup(**LIMITED) as cgroup:  # type: ignore[arg-type]
        yield cgroup


@pytest.mark.cgroup2vm
def test_meminfo_in_cgroup_shows_its_limit(shared_mount: Daemon, limited: TestCgroup) -> None:
    text = limited.run(["cat", str(shared_mount.path("proc/meminfo"))])
    # The kernel's layout: name padded to 16 columns, value right-aligned in 8.
    assert "MemTotal:         262144 kB" in text.splitlines()
    assert meminfo_kb(text, "MemFree") <= 262144
    assert meminfo_kb(text, "MemAvailable") <= 262144


@pytest.mark.cgroup2vm
def test_meminfo_outside_shows_the_host(shared_mount: Daemon) -> None:
    # The test runner itself is not memory-limited (true on CI and in the cgroup2 VM).
    text = subprocess.run(
        ["cat", str(shared_mount.path("proc/meminfo"))], capture_output=True, text=True, check=True
    ).stdout
    assert meminfo_kb(text, "MemTotal") == host_meminfo_kb("MemTotal")


@pytest.mark.cgroup2vm
def test_cpuinfo_and_online_in_cgroup_show_one_cpu(
    shared_mount: Daemon, limited: TestCgroup
) -> None:
    online = limited.run(["cat", str(shared_mount.path("sys/devices/system/cpu/online"))])
    cpuinfo = limited.run(["cat", str(shared_mount.path("proc/cpuinfo"))])
    assert online == "0\n"
    processors = [line for line in cpuinfo.splitlines() if line.startswith("processor")]
    assert len(processors) == 1
    assert processors[0].split(":")[1].strip() == "0"


def test_every_served_file_reads_inside_and_outside(mounted: Daemon, limited: TestCgroup) -> None:
    for relative in (
        "proc/cpuinfo",
        "proc/diskstats",
        "proc/loadavg",
        "proc/meminfo",
        "proc/stat",
        "proc/swaps",
        "proc/uptime",
        "sys/devices/system/cpu/online",
    ):
        path = str(mounted.path(relative))
        inside = limited.run(["cat", path])
        outside = subprocess.run(["cat", path], capture_output=True, text=True, check=True)
        # diskstats may be empty inside: like LXCFS, devices the cgroup never used are left out.
        if relative != "proc/diskstats":
            assert inside.endswith("\n"), relative
        assert outside.stdout.endswith("\n"), relative


def test_one_pass_is_one_snapshot_and_reading_from_0_again_is_fresh(mounted: Daemon) -> None:
    """The offsets of one pass over an open file come from one rendering; a read from 0
    again renders it again, as the kernel's files do (free -s and top seek back to 0)."""
    path = mounted.path("proc/uptime")
    fd = os.open(path, os.O_RDONLY)
    try:
        start = os.pread(fd, 2, 0)
        time.sleep(0.05)  # uptime moves every 10 ms
        rest = os.pread(fd, 4096, 2)
        assert os.pread(fd, 4096, 2 + len(rest)) == b""
        first = start + rest
        assert float(first.split()[0]) > 0
        time.sleep(0.15)  # past the render cache's 0.1 s
        again = os.pread(fd, 4096, 0)
        assert float(again.split()[0]) > float(first.split()[0])
    finally:
        os.close(fd)


def test_small_reads_reassemble_the_whole_file(mounted: Daemon) -> None:
    path = mounted.path("proc/meminfo")
    chunks = []
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(7):
            chunks.append(chunk)
    text = b"".join(chunks).decode()
    assert text.startswith("MemTotal:")
    assert text.endswith("\n")
    assert all(":" in line for line in text.splitlines())


def test_loadavg_with_l_follows_the_container(start_daemon: StartDaemon) -> None:
    """-l: the first read shows zeros (as LXCFS); a busy thread raises avg1 within a pass."""
    daemon = start_daemon(args=["-l"])
    loadavg = str(daemon.path("proc/loadavg"))
    with test_cgroup(memory_limit=256 * MIB) as cgroup:
        busy = cgroup.spawn(["sh", "-c", "while :; do :; done"])
        try:
            first = cgroup.run(["cat", loadavg]).split()
            assert first[:3] == ["0.00", "0.00", "0.00"]
            running, total = (int(n) for n in first[3].split("/"))
            assert 1 <= running <= total
            deadline = time.monotonic() + 5 * 3 + TIMEOUT
            while float(cgroup.run(["cat", loadavg]).split()[0]) == 0.0:
                assert time.monotonic() < deadline, "avg1 never rose above 0"
                time.sleep(0.5)
        finally:
            kill_started(busy)
