"""Real tools inside a "container": a private mount namespace with our files bound over
/proc and /sys, the process in the issue's test cgroup (256 MiB, cpuset 0, quota 0.5 CPU).

This is what LXC hooks and the Kubernetes webhooks set up; the tools are what people run.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from tests.cgroups import TestCgroup, test_cgroup
from tests.integration.helpers import MIB, TIMEOUT, Daemon, in_view_argv, in_view_env

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.cgroup2vm]

LIMIT = 256 * MIB


@pytest.fixture
def container(shared_mount: Daemon) -> Iterator[tuple[Daemon, TestCgroup]]:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    with test_cgroup(memory_limit=LIMIT, cpus="0", cfs=(50_000, 100_000)) as cgroup:
        yield shared_mount, cgroup


def run_inside(container: tuple[Daemon, TestCgroup], argv: Sequence[str]) -> str:
    daemon, cgroup = container
    return cgroup.run(in_view_argv(argv), timeout=TIMEOUT, env=in_view_env(daemon.mountpoint))


def test_free_reports_the_limit(container: tuple[Daemon, TestCgroup]) -> None:
    out = run_inside(container, ["free", "-b"])
    mem = next(line.split() for line in out.splitlines() if line.startswith("Mem:"))
    assert int(mem[1]) == 268435456, out


def test_free_refreshing_sees_a_new_limit(container: tuple[Daemon, TestCgroup]) -> None:
    """free -s (like top and vmstat) opens /proc/meminfo once and seeks back to 0 for each
    refresh: its second table must show the limit set after its first."""
    daemon, cgroup = container
    free = cgroup.spawn(
        in_view_argv(["free", "-b", "-s", "1", "-c", "2"]),
        stdout=subprocess.PIPE,
        text=True,
        env=in_view_env(daemon.mountpoint),
    )
    assert free.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in free.stdout], daemon=True).start()
    totals: list[int] = []
    while len(totals) < 2:
        line = lines.get(timeout=TIMEOUT)
        if line.startswith("Mem:"):
            totals.append(int(line.split()[1]))
            if len(totals) == 1:
                memory = cgroup.directory("memory")
                name = "memory.max" if cgroup.version == 2 else "memory.limit_in_bytes"
                (memory / name).write_text(str(384 * MIB))
    assert free.wait(timeout=TIMEOUT) == 0
    assert totals == [LIMIT, 384 * MIB]


def test_getconf_sees_one_cpu(container: tuple[Daemon, TestCgroup]) -> None:
    assert run_inside(container, ["getconf", "_NPROCESSORS_ONLN"]).strip() == "1"


def test_top_runs_and_shows_256_mib(container: tuple[Daemon, TestCgroup]) -> None:
    out = run_inside(container, ["top", "-bn1"])
    match = re.search(r"MiB Mem\s*:\s*([\d.]+)\s+total", out)
    assert match is not None, out
    assert match.group(1) == "256.0", out


def test_uptime_runs(container: tuple[Daemon, TestCgroup]) -> None:
    out = run_inside(container, ["uptime"])
    assert "load average" in out, out


def test_psutil_sees_the_container(container: tuple[Daemon, TestCgroup]) -> None:
    script = "import psutil; print(psutil.virtual_memory().total, psutil.cpu_count())"
    total, cpus = run_inside(container, [sys.executable, "-c", script]).split()
    assert int(total) == 268435456
    assert int(cpus) == 1


def test_cpuinfo_through_the_bind_shows_one_processor(
    container: tuple[Daemon, TestCgroup],
) -> None:
    out = run_inside(container, ["cat", "/proc/cpuinfo", "/sys/devices/system/cpu/online"])
    assert sum(1 for line in out.splitlines() if line.startswith("processor")) == 1
    assert out.endswith("\n0\n")


def test_a_stat_says_no_other_containers_length(shared_mount: Daemon) -> None:
    """One inode serves every container its own length of content, so a stat cannot say
    the length: it said the last opener's (a 1-CPU container's cpuinfo length to a 2-CPU
    one, which Node's readFileSync reads no further than, and which tells a tenant its
    neighbour's CPU count). procfs says 0, and readers of /proc read such files to EOF."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs for containers of different cpuinfo lengths")
    env = in_view_env(shared_mount.mountpoint)
    probe = (
        "import os, sys\n"
        "fd = os.open('/proc/cpuinfo', os.O_RDONLY)\n"
        "print(os.fstat(fd).st_size, flush=True)\n"
        "sys.stdin.readline()\n"
        "data = os.read(fd, 1 << 20)\n"
        "print(os.fstat(fd).st_size, os.lseek(fd, 0, os.SEEK_END), len(data), flush=True)\n"
    )
    with test_cgroup(cpus="0") as small, test_cgroup(cpus="0-1") as big:
        whole = big.run(in_view_argv(["cat", "/proc/cpuinfo"]), timeout=TIMEOUT, env=env)
        reader = big.spawn(
            in_view_argv([sys.executable, "-c", probe]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert reader.stdin is not None
        assert reader.stdout is not None
        first = reader.stdout.readline().split()
        small.run(in_view_argv(["cat", "/proc/cpuinfo"]), timeout=TIMEOUT, env=env)
        time.sleep(1.2)  # past the kernel's cached attributes: the fstat asks the daemon
        out, _ = reader.communicate("go\n", timeout=TIMEOUT)
    assert whole.count("processor\t: ") == 2
    assert first == ["0"]
    assert out.split() == ["0", "0", str(len(whole.encode()))]
