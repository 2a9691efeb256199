"""The stateful views through a real mount: uptime from the container's init, per-container
load average (-l), and the CPU view (--enable-cfs) with counters that never go back."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procfs_view.loadavg import _thread_state
from tests.cgroups import test_cgroup
from tests.integration.helpers import (
    MIB,
    TIMEOUT,
    StartDaemon,
    in_view_argv,
    in_view_env,
    kill_started,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse]

BUSY = "while :; do :; done"


def host_uptime() -> float:
    with open("/proc/uptime") as handle:
        return float(handle.read().split()[0])


def pid_namespace_argv(mountpoint: str, script: str) -> list[str]:
    """A new pid namespace with its own /proc (``--mount-proc``), our uptime bound over it,
    then ``script`` (its init is the shell: pid 1 of the namespace)."""
    bind = f"mount --bind {mountpoint}/proc/uptime /proc/uptime; {script}"
    return ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", bind]


@pytest.mark.cgroup2vm
def test_uptime_counts_from_the_container_init(start_daemon: StartDaemon) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    daemon = start_daemon()
    mountpoint = str(daemon.mountpoint)
    with test_cgroup(memory_limit=256 * MIB) as first_cgroup, test_cgroup() as second_cgroup:
        older = first_cgroup.spawn(
            pid_namespace_argv(mountpoint, "sleep 3; cat /proc/uptime"),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        newer = second_cgroup.spawn(
            pid_namespace_argv(mountpoint, "sleep 1; cat /proc/uptime"),
            stdout=subprocess.PIPE,
            text=True,
        )
        older_out, _ = older.communicate(timeout=TIMEOUT)
        newer_out, _ = newer.communicate(timeout=TIMEOUT)
    older_uptime, older_idle = map(float, older_out.split())
    newer_uptime, newer_idle = map(float, newer_out.split())
    assert older_uptime < 10 < host_uptime()
    assert newer_uptime < older_uptime - 1.0
    # Idle is summed over the CPUs shown, as the kernel's: these cgroups see every CPU.
    cpus = os.cpu_count() or 1
    assert 0 <= older_idle <= older_uptime * cpus
    assert 0 <= newer_idle <= newer_uptime * cpus
    if cpus > 1:
        assert older_idle > older_uptime  # a sleeping container idles on every CPU


def wait_until_asleep(pid: int, timeout: float = 30) -> None:
    """Until ``pid`` is in S state (a process just started is runnable for a while, the
    longer on a busy, emulated VM)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _thread_state(Path("/proc"), pid) == "S":
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never went to sleep")


#: What one 5 s sample that caught one task runnable leaves in the 1-minute load:
#: 1 - exp(-5/60).
ONE_TASK_ONE_SAMPLE = 0.08


@pytest.mark.cgroup2vm
def test_loadavg_per_container(start_daemon: StartDaemon) -> None:
    """Two busy loops for ~12 s raise the 1-minute load; an idle container stays near 0.00
    (a sample may catch its own reading ``cat`` runnable, as the kernel's would); a cgroup
    nobody reads is never sampled."""
    daemon = start_daemon(args=["-l", "-d"])
    loadavg = str(daemon.path("proc/loadavg"))
    with (
        test_cgroup(memory_limit=256 * MIB) as busy,
        test_cgroup(memory_limit=256 * MIB) as idle,
        test_cgroup(memory_limit=256 * MIB) as unread,
    ):
        loops = [busy.spawn(["sh", "-c", BUSY]) for _ in range(2)]
        unread.spawn(["sleep", "60"])
        wait_until_asleep(idle.spawn(["sleep", "60"]).pid)
        try:
            busy.run(["cat", loadavg])
            idle.run(["cat", loadavg])
            time.sleep(12)
            busy_fields = busy.run(["cat", loadavg]).split()
            idle_fields = idle.run(["cat", loadavg]).split()
        finally:
            for loop in loops:
                kill_started(loop)
    assert float(busy_fields[0]) > 0.1, busy_fields
    assert int(busy_fields[3].split("/")[0]) >= 1, busy_fields
    assert float(idle_fields[0]) <= ONE_TASK_ONE_SAMPLE, idle_fields
    assert float(idle_fields[0]) < float(busy_fields[0]) / 2, (idle_fields, busy_fields)
    sampled = re.findall(r"loadavg: sampling (\S+) from now on", daemon.log())
    assert any(busy.name in path for path in sampled)
    assert not any(unread.name in path for path in sampled)


@pytest.mark.cgroup2vm
def test_cpu_view_two_cpus_and_stat_never_goes_back(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(args=["--enable-cfs"])
    stat = str(daemon.path("proc/stat"))
    reader = (
        "import sys\n"
        "for _ in range(200):\n"
        f"    with open({stat!r}) as f: sys.stdout.write(f.read().split('intr')[0] + '--\\n')\n"
    )
    with test_cgroup(memory_limit=256 * MIB, cpus="0-1", cfs=(150_000, 100_000)) as cgroup:
        loop = cgroup.spawn(["sh", "-c", BUSY])
        try:
            env = in_view_env(daemon.mountpoint)
            env["COLUMNS"] = "400"  # top -1 puts CPUs side by side and cuts at the width
            cpus = cgroup.run(in_view_argv(["getconf", "_NPROCESSORS_ONLN"]), env=env).strip()
            top = cgroup.run(in_view_argv(["top", "-bn1", "-1"]), env=env)
            reads = cgroup.run([sys.executable, "-c", reader], timeout=TIMEOUT * 4)
        finally:
            kill_started(loop)
    assert cpus == "2"
    assert re.findall(r"%Cpu\d+", top) == ["%Cpu0", "%Cpu1"], top
    previous: dict[str, list[int]] = {}
    snapshots = [s for s in reads.split("--\n") if s.strip()]
    assert len(snapshots) == 200
    for snapshot in snapshots:
        lines = {
            line.split()[0]: [int(v) for v in line.split()[1:]] for line in snapshot.splitlines()
        }
        assert set(lines) == {"cpu", "cpu0", "cpu1"}
        for name, values in lines.items():
            if name in previous:
                assert all(
                    now >= before for now, before in zip(values, previous[name], strict=True)
                ), (name, previous[name], values)
        previous = lines
    busy = previous["cpu"][0] + previous["cpu"][2]
    assert busy > 0
