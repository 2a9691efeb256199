"""The mount outlives the daemon (``--fd-store``): systemd keeps the FUSE connection, so
after a crash or a restart a container's files, and the files its tools keep open (top,
free -s, vmstat), go on working; reads in between wait instead of failing. A stop still
ends it, and the next start mounts afresh."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cgroups import TestCgroup, test_cgroup
from tests.integration.fake_systemd import FakeSystemd
from tests.integration.helpers import (
    TIMEOUT,
    Daemon,
    in_view_argv,
    in_view_env,
    is_mounted,
    meminfo_kb,
)

pytestmark = [pytest.mark.fuse, pytest.mark.root]

MIB = 1024 * 1024
#: The container's memory limit, as meminfo and free -k show it.
LIMIT_KB = 300 * 1024

# A container's monitor: keeps /proc/meminfo open and reads it from 0 on "read" (as
# `free -s` does), moves itself to another cgroup on "move PROCS...".
_MONITOR = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for line in sys.stdin:
    command = line.split()
    if command[0] == "read":
        try:
            first = os.pread(fd, 65536, 0).split(b"\n")[0].decode()
        except OSError as error:
            first = "errno %d" % error.errno
        print(first, flush=True)
    elif command[0] == "move":
        for procs in command[1:]:
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))
        print("moved", flush=True)
"""


class Monitor:
    def __init__(self, cgroup: TestCgroup, path: Path) -> None:
        self.process = cgroup.spawn(
            [sys.executable, "-c", _MONITOR, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def mem_total_kb(self) -> int:
        return meminfo_kb(self.ask("read"), "MemTotal")

    def read_later(self) -> tuple[threading.Thread, list[str]]:
        """A read issued now, answered whenever the daemon can (while none runs, it waits)."""
        answers: list[str] = []
        thread = threading.Thread(target=lambda: answers.append(self.ask("read")), daemon=True)
        thread.start()
        return thread, answers


@pytest.fixture
def container() -> Iterator[TestCgroup]:
    with test_cgroup(memory_limit=LIMIT_KB * 1024) as cgroup:
        yield cgroup


@pytest.fixture
def systemd(tmp_path: Path, container: TestCgroup) -> Iterator[FakeSystemd]:
    """After the container: closed first, the store's end ends any read still waiting
    (a reader waiting on an answer its dead daemon read cannot even be killed)."""
    supervisor = FakeSystemd(tmp_path)
    try:
        yield supervisor
    finally:
        supervisor.close()


def start_watched(systemd: FakeSystemd, container: TestCgroup) -> tuple[Daemon, Monitor]:
    """The daemon, and a monitor in the container that keeps its meminfo open (read once)."""
    daemon = systemd.start()
    monitor = Monitor(container, daemon.path("proc/meminfo"))
    assert monitor.mem_total_kb() == LIMIT_KB
    return daemon, monitor


def mount_id(mountpoint: Path) -> str:
    """The mount's id in /proc/self/mountinfo: the same mount, not one made again."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            return fields[0]
    raise AssertionError(f"{mountpoint} not mounted")


@pytest.mark.cgroup2vm
def test_a_crashed_daemons_mount_and_open_files_are_served_by_the_next(
    systemd: FakeSystemd, container: TestCgroup
) -> None:
    first, monitor = start_watched(systemd, container)
    assert [name for name, _ in systemd.stored] == ["fuse"]
    mount = mount_id(systemd.mountpoint)

    systemd.crash(first)
    thread, answers = monitor.read_later()
    thread.join(0.5)
    assert thread.is_alive(), f"a read with no daemon should wait, got {answers}"

    second = systemd.start()  # Restart=on-failure, with the stored connection
    thread.join(TIMEOUT)
    assert meminfo_kb(answers[0], "MemTotal") == LIMIT_KB
    assert monitor.mem_total_kb() == LIMIT_KB
    assert mount_id(systemd.mountpoint) == mount
    out = container.run(["head", "-1", str(second.path("proc/meminfo"))])
    assert meminfo_kb(out, "MemTotal") == LIMIT_KB
    assert "serving the FUSE connection of the previous daemon" in second.log()


def test_a_restart_leaves_the_mount_to_the_next_daemon(
    systemd: FakeSystemd, container: TestCgroup
) -> None:
    first, monitor = start_watched(systemd, container)

    assert systemd.terminate(first) == 0
    assert "left the mount" in first.log()
    thread, answers = monitor.read_later()
    second = systemd.start()
    thread.join(TIMEOUT)
    assert meminfo_kb(answers[0], "MemTotal") == LIMIT_KB
    assert monitor.mem_total_kb() == LIMIT_KB

    # And the one after it: the connection passes on from daemon to daemon.
    assert systemd.terminate(second) == 0
    systemd.start()
    assert monitor.mem_total_kb() == LIMIT_KB


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace missing (scripts/setup.sh)")
def test_a_request_the_crashed_daemon_read_but_never_answered_is_answered_by_the_next(
    systemd: FakeSystemd, container: TestCgroup
) -> None:
    """The daemon is killed between reading a request and replying (strace holds its
    reply back): the next one asks the kernel to resend it (FUSE_NOTIFY_RESEND, Linux
    6.9), or that reader would wait for good."""
    first, monitor = start_watched(systemd, container)
    # A reply held back 3 s: SIGKILL takes the daemon when the delay ends, before the write.
    held_back = ["-e", "trace=writev", "-e", "inject=writev:delay_enter=3000000"]
    tracer = subprocess.Popen(
        ["strace", "-qq", "-p", str(first.process.pid), *held_back],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while (
            f"TracerPid:\t{tracer.pid}" not in Path(f"/proc/{first.process.pid}/status").read_text()
        ):
            assert time.monotonic() < deadline, "strace did not attach"
            time.sleep(0.02)
        thread, answers = monitor.read_later()
        time.sleep(0.5)  # the daemon reads it and gets stuck replying
        systemd.crash(first)
    finally:
        tracer.kill()
        tracer.wait(TIMEOUT)
    thread.join(0.5)
    assert thread.is_alive(), f"the read should still wait, got {answers}"
    second = systemd.start()
    thread.join(TIMEOUT)
    if "cannot resend" in second.log():
        monitor.process.kill()  # its read waits for good: the kernel's limit, not ours
        pytest.skip("this kernel has no FUSE_NOTIFY_RESEND (Linux < 6.9)")
    assert meminfo_kb(answers[0], "MemTotal") == LIMIT_KB


def test_a_file_opened_before_the_restart_by_a_process_now_elsewhere_is_refused(
    systemd: FakeSystemd, container: TestCgroup
) -> None:
    """The file handle remembers the opener's cgroups: moved to another container's while
    no daemon ran, it gets EIO, neither the old container's numbers nor the new one's."""
    first, monitor = start_watched(systemd, container)
    systemd.crash(first)
    with test_cgroup(memory_limit=200 * MIB) as other:
        procs = " ".join(str(path / "cgroup.procs") for path in other.directories.values())
        assert monitor.ask(f"move {procs}") == "moved"
        systemd.start()
        assert monitor.ask("read") == f"errno {errno.EIO}"
        monitor.process.kill()
        monitor.process.wait(TIMEOUT)


def test_a_stop_ends_the_connection_and_the_next_start_mounts_afresh(
    systemd: FakeSystemd, container: TestCgroup
) -> None:
    first, monitor = start_watched(systemd, container)
    assert systemd.stop(first) == 0
    assert monitor.ask("read") in (f"errno {errno.ENOTCONN}", f"errno {errno.ECONNABORTED}")
    with pytest.raises(OSError, match="not connected"):
        os.statvfs(systemd.mountpoint)

    second = systemd.start()
    assert "detaching the dead" in second.log()
    out = container.run(["head", "-1", str(second.path("proc/meminfo"))])
    assert meminfo_kb(out, "MemTotal") == LIMIT_KB
    assert [name for name, _ in systemd.stored] == ["fuse"]


def test_without_the_store_a_stop_unmounts_as_before(tmp_path: Path) -> None:
    """Under systemd without the store (no --fd-store, no $FDSTORE) nothing is stored and
    SIGTERM unmounts, as it always did."""
    supervisor = FakeSystemd(tmp_path, fd_store=False)
    try:
        daemon = supervisor.start()
        assert supervisor.stored == []
        assert supervisor.terminate(daemon) == 0
        assert "unmounted" in daemon.log()
        assert not is_mounted(supervisor.mountpoint)
    finally:
        supervisor.close()


def test_top_and_free_refreshing_across_a_restart_and_a_crash_keep_going(
    systemd: FakeSystemd, container: TestCgroup
) -> None:
    """What a user at a container's console sees: `top` and `free -s` keep /proc/stat and
    /proc/meminfo open and re-read them every refresh; through a restart and a crash of
    the daemon they print every frame, with the container's numbers."""
    first = systemd.start()
    env = in_view_env(systemd.mountpoint)
    top = container.spawn(
        in_view_argv(["top", "-b", "-d", "0.3", "-n", "16"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    free = container.spawn(
        in_view_argv(["free", "-k", "-s", "0.3", "-c", "16"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    time.sleep(1.0)
    assert systemd.terminate(first) == 0
    second = systemd.start()
    time.sleep(1.0)
    systemd.crash(second)
    systemd.start()
    top_out, _ = top.communicate(timeout=TIMEOUT)
    free_out, _ = free.communicate(timeout=TIMEOUT)
    assert top.returncode == 0, top_out
    assert free.returncode == 0, free_out
    assert top_out.count("MiB Mem") == 16, top_out
    assert top_out.count("%Cpu(s)") == 16, top_out
    totals = [line.split()[1] for line in free_out.splitlines() if line.startswith("Mem:")]
    assert totals == [str(LIMIT_KB)] * 16, free_out
