"""The daemon's life: clean stop, one instance per pidfile, recovery from a killed daemon,
refusing foreign directories, and the SIGUSR1/SIGUSR2 controls of LXCFS (SIGHUP reloads
too)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from procfs_view.daemon import RELOAD_SPACING
from tests.cgroups import TestCgroup, test_cgroup
from tests.integration.helpers import (
    MIB,
    REPO,
    TIMEOUT,
    Daemon,
    StartDaemon,
    host_meminfo_kb,
    is_mounted,
    kill_started,
    meminfo_kb,
)

pytestmark = pytest.mark.fuse


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigterm_unmounts_removes_pidfile_and_exits_0(mounted: Daemon) -> None:
    assert mounted.pidfile.read_text().strip() == str(mounted.process.pid)
    assert mounted.stop() == 0
    assert not is_mounted(mounted.mountpoint)
    assert not mounted.pidfile.exists()
    assert os.listdir(mounted.mountpoint) == []


def test_sigint_also_stops_cleanly(mounted: Daemon) -> None:
    mounted.send(signal.SIGINT)
    assert mounted.process.wait(timeout=TIMEOUT) == 0
    assert not is_mounted(mounted.mountpoint)


def test_sigint_sent_as_it_starts_serving_stops_it(start_daemon: StartDaemon) -> None:
    """A SIGINT that arrives between the "serving" line and trio's receiver (a Ctrl-C
    while it starts) is held for the receiver: it used to be dropped (an ignored action
    set again discards a pending signal) and the daemon served on. Stopped at the line,
    so the signal is pending before trio runs, whatever the machine's load."""
    daemon = start_daemon(wait=False)
    deadline = time.monotonic() + TIMEOUT
    while "serving " not in daemon.log():
        assert daemon.process.poll() is None, daemon.log()
        assert time.monotonic() < deadline, daemon.log()
    daemon.send(signal.SIGSTOP)
    daemon.send(signal.SIGINT)
    daemon.send(signal.SIGCONT)
    assert daemon.process.wait(timeout=TIMEOUT) == 0, daemon.log()
    assert "SIGINT: stopping" in daemon.log()
    assert not is_mounted(daemon.mountpoint)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1])
def test_signals_while_stopping_do_not_kill_it_with_the_mount_attached(
    mounted: Daemon, signum: int
) -> None:
    """systemd or kubelet may signal again while the daemon unmounts (a second stop, a
    reload): once the signal task has stopped listening they used to take their default
    action and leave a dead mount behind."""
    mounted.send(signal.SIGTERM)
    while mounted.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            mounted.send(signum)
        time.sleep(0.0005)
    assert mounted.process.returncode == 0, mounted.log()
    assert not is_mounted(mounted.mountpoint)
    assert "unmounted" in mounted.log()


def test_second_daemon_on_the_same_pidfile_fails_and_leaves_it(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    first = start_daemon()
    second = start_daemon(mountpoint=tmp_path / "other", pidfile=first.pidfile, wait=False)
    assert second.process.wait(timeout=TIMEOUT) != 0
    assert "another procfs-view" in second.log()
    assert str(first.process.pid) in second.log()
    assert first.pidfile.read_text().strip() == str(first.process.pid)
    assert not is_mounted(tmp_path / "other")
    assert first.path("proc/meminfo").read_text().startswith("MemTotal:")


def test_second_daemon_on_a_served_mountpoint_refuses(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    first = start_daemon()
    second = start_daemon(pidfile=tmp_path / "second.pid", wait=False)
    assert second.process.wait(timeout=TIMEOUT) != 0
    assert "already served" in second.log()
    assert first.process.poll() is None
    assert first.path("proc/meminfo").read_text().startswith("MemTotal:")


def test_killed_daemon_leaves_a_dead_mount_that_the_next_start_recovers(
    start_daemon: StartDaemon,
) -> None:
    first = start_daemon()
    first.process.kill()
    first.process.wait(timeout=TIMEOUT)
    # statvfs, not stat: stat may be answered from the kernel's attribute cache.
    with pytest.raises(OSError, match="not connected") as dead:
        os.statvfs(first.mountpoint)
    assert dead.value.errno == errno.ENOTCONN
    second = start_daemon()  # same mountpoint, same (now stale, unlocked) pidfile
    assert "dead fuse.procfs-view mount" in second.log()
    assert second.path("proc/meminfo").read_text().startswith("MemTotal:")
    assert second.pidfile.read_text().strip() == str(second.process.pid)
    mounts_here = [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == str(second.mountpoint)
    ]
    assert len(mounts_here) == 1, mounts_here
    assert second.stop() == 0
    assert not is_mounted(second.mountpoint)


def test_prepare_mountpoint_through_a_shared_parent_clears_the_dead_mount(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """The DaemonSet's container: after an unclean death (a liveness kill, OOM) the node
    keeps a dead mount at /var/lib/lxcfs that nothing can stat, so no container can get
    it as a volume. The daemon's container sees the node's /var/lib through a
    Bidirectional volume instead (an rshared rbind, emulated here in a mount namespace of
    its own), and what the daemon does at every start (prepare_mountpoint, run here as
    the command) detaches the dead mount there; the detach must reach the node."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    node = tmp_path / "node-var-lib"  # the node's /var/lib, a shared mount as kubelet needs
    node.mkdir()
    subprocess.run(["mount", "--bind", str(node), str(node)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(node)], check=True)
        first = start_daemon(mountpoint=node / "lxcfs")
        first.process.kill()
        first.process.wait(timeout=TIMEOUT)
        with pytest.raises(OSError, match="not connected"):
            os.statvfs(node / "lxcfs")
        volume = tmp_path / "host-var-lib"  # the init container's view of it
        volume.mkdir()
        script = (
            f"mount --rbind {node} {volume} && mount --make-rshared {volume} && "
            f"exec {sys.executable} -m procfs_view prepare-mountpoint {volume / 'lxcfs'}"
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        result = subprocess.run(
            ["unshare", "-m", "--propagation", "unchanged", "sh", "-c", script],
            capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert not is_mounted(node / "lxcfs")  # gone on the node too
        os.statvfs(node / "lxcfs")
        second = start_daemon(mountpoint=node / "lxcfs")
        assert second.path("proc/meminfo").read_text().startswith("MemTotal:")
        assert second.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(node)], check=False)


def test_refuses_a_non_empty_foreign_directory(start_daemon: StartDaemon, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "data").write_text("precious")
    daemon = start_daemon(mountpoint=occupied, wait=False)
    assert daemon.process.wait(timeout=TIMEOUT) != 0
    assert "not empty" in daemon.log()
    assert (occupied / "data").read_text() == "precious"
    assert not is_mounted(occupied)


def test_creates_a_missing_mountpoint(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = start_daemon(mountpoint=tmp_path / "a" / "b" / "lxcfs")
    assert daemon.path("proc/meminfo").read_text().startswith("MemTotal:")


def test_extra_fuse_options_are_passed(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(args=["-o", "noatime"])
    line = next(
        line.split()
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1] == str(daemon.mountpoint)
    )
    assert "noatime" in line[3].split(",")


@pytest.mark.root
def test_sigusr2_toggles_virtualization_off_and_on(mounted: Daemon) -> None:
    with test_cgroup(memory_limit=256 * MIB) as cgroup:

        def mem_total() -> int:
            return meminfo_kb(cgroup.run(["cat", str(mounted.path("proc/meminfo"))]), "MemTotal")

        assert mem_total() == 262144
        mounted.send(signal.SIGUSR2)
        wait_until(lambda: mem_total() == host_meminfo_kb("MemTotal"), "host content")
        mounted.send(signal.SIGUSR2)
        wait_until(lambda: mem_total() == 262144, "virtualized content again")
    assert mounted.log().count("SIGUSR2") == 2


@pytest.mark.root
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGHUP])
def test_reload_signals_reload_without_disturbing_open_readers(
    mounted: Daemon, signum: signal.Signals
) -> None:
    """SIGHUP reloads as SIGUSR1 does: admins send it to reload, and a stop on it would
    leave every container's binds dead (systemd restarts only on failure)."""
    # Reads half the file, waits for a line on stdin, reads the rest, then re-opens.
    script = (
        "import os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "head = os.read(fd, 40)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "rest = b''\n"
        "while chunk := os.read(fd, 64):\n"
        "    rest += chunk\n"
        "print((head + rest).decode().replace('\\n', '|'), flush=True)\n"
        "print(open(sys.argv[1]).read().replace('\\n', '|'), flush=True)\n"
    )
    with test_cgroup(memory_limit=256 * MIB) as cgroup:
        reader = cgroup.spawn(
            [sys.executable, "-c", script, str(mounted.path("proc/meminfo"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert reader.stdout is not None
            assert reader.stdin is not None
            assert reader.stdout.readline().strip() == "ready"
            mounted.send(signum)
            mounted.wait_for_log(f"{signum.name}: reloaded")
            reader.stdin.write("go\n")
            reader.stdin.flush()
            snapshot = reader.stdout.readline().rstrip("\n").replace("|", "\n")
            after = reader.stdout.readline().rstrip("\n").replace("|", "\n")
            assert reader.wait(timeout=TIMEOUT) == 0
        finally:
            kill_started(reader)
    assert meminfo_kb(snapshot, "MemTotal") == 262144
    assert snapshot.endswith("kB\n")
    assert meminfo_kb(after, "MemTotal") == 262144
    assert is_mounted(mounted.mountpoint)
    assert mounted.process.poll() is None
    assert "reload failed" not in mounted.log()


@pytest.mark.root
@pytest.mark.cgroup2vm
def test_sigusr1_reload_keeps_stat_counters_going_forward(mounted: Daemon) -> None:
    """top keeps /proc/stat open across a reload: its counters must carry over. A cpuset
    narrowed from 0-1 to 0 keeps the aggregate line (it never drops, as the kernel's does
    not when a CPU goes away); a reload used to restart it from the one CPU left."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs to narrow a cpuset")
    path = str(mounted.path("proc/stat"))

    def aggregate(cgroup: TestCgroup) -> list[int]:
        time.sleep(0.15)  # past the render cache
        line = cgroup.run(["cat", path]).splitlines()[0]
        assert line.startswith("cpu ")
        return [int(value) for value in line.split()[1:]]

    with test_cgroup(cpus="0-1") as cgroup:
        cgroup.spawn(["sleep", "60"])  # keeps the cgroup (and its state) between reads
        readings = [aggregate(cgroup)]
        (cgroup.directory("cpuset") / "cpuset.cpus").write_text("0")
        readings.append(aggregate(cgroup))
        mounted.send(signal.SIGUSR1)
        mounted.wait_for_log("SIGUSR1: reloaded")
        readings.append(aggregate(cgroup))
    for before, after in itertools.pairwise(readings):
        assert all(a >= b for a, b in zip(after, before, strict=True)), (before, after)
    assert "reload failed" not in mounted.log()


@pytest.mark.root
def test_a_burst_of_reload_signals_is_one_or_two_reloads_and_a_toggle_in_between_holds(
    mounted: Daemon,
) -> None:
    """Each reload re-imports the views (~150 ms); a storm of SIGUSR1s used to reload once
    per signal, in the FUSE thread, and reads waited up to 1.5 s (chaos review). Reloads
    are now spaced RELOAD_SPACING apart, off that thread, and a SIGUSR2 sent meanwhile is
    not undone by the service a reload brings."""
    for _ in range(30):
        mounted.send(signal.SIGUSR1)
        time.sleep(0.005)
    mounted.send(signal.SIGUSR2)  # off, while the first reload may be building
    mounted.wait_for_log("virtualization off")
    mounted.wait_for_log("SIGUSR1: reloaded")
    time.sleep(2.5 * RELOAD_SPACING)  # the one that waited, if any, is done too
    assert 1 <= mounted.log().count("SIGUSR1: reloaded") <= 2, mounted.log()
    with test_cgroup(memory_limit=96 * MIB) as cgroup:
        off = cgroup.run(["cat", str(mounted.path("proc/meminfo"))])
        assert meminfo_kb(off, "MemTotal") == host_meminfo_kb("MemTotal")
        mounted.send(signal.SIGUSR2)
        mounted.wait_for_log("virtualization on")
        on = cgroup.run(["cat", str(mounted.path("proc/meminfo"))])
        assert meminfo_kb(on, "MemTotal") == 96 * 1024
    assert "reload failed" not in mounted.log()


def test_sigterm_with_a_reader_holding_a_file_still_unmounts(mounted: Daemon) -> None:
    fd = os.open(mounted.path("proc/meminfo"), os.O_RDONLY)
    try:
        os.read(fd, 10)
        assert mounted.stop() == 0
        assert not is_mounted(mounted.mountpoint)  # detached lazily, gone from the table
    finally:
        with contextlib.suppress(OSError):  # the close's FLUSH finds no daemon: ENOTCONN
            os.close(fd)
