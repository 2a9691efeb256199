"""packaging/systemd/procfs-view.service: systemd-analyze accepts it, it keeps LXCFS's
conventions, and its command lines work when run as systemd would run them (on a
temporary mountpoint, with this checkout's procfs-view in place of the installed one)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.helpers import (
    REPO,
    TIMEOUT,
    Daemon,
    detach_all,
    is_mounted,
    spawn_daemon,
    wait_mounted,
)

UNIT = REPO / "packaging" / "systemd" / "procfs-view.service"
INSTALLED_BINARY = "/usr/local/bin/procfs-view"
MOUNTPOINT = "/var/lib/lxcfs"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> key -> values in order (systemd allows a key more than once)."""
    unit: Unit = {}
    section: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def command(line: str, replacements: dict[str, str]) -> tuple[list[str], bool]:
    """argv of an Exec line and whether its failure is ignored (the ``-`` prefix)."""
    ignore = False
    while line[:1] in ("-", "@", "+", "!", ":"):
        ignore = ignore or line[0] == "-"
        line = line[1:]
    argv = shlex.split(line)
    for old, new in replacements.items():
        argv = [arg.replace(old, new) for arg in argv]
    return argv, ignore


def stand_in_binary(directory: Path) -> Path:
    """An executable that runs this checkout's daemon (exec, so its pid is the daemon's),
    with its pidfile under ``directory`` so it cannot meet a real host daemon's."""
    script = directory / "procfs-view"
    script.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(str(REPO))} "
        f"exec {shlex.quote(sys.executable)} -m procfs_view "
        f'--runtime-dir {shlex.quote(str(directory / "run"))} "$@"\n'
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def test_follows_lxcfs_unit_conventions(unit: Unit) -> None:
    service, order = unit["Service"], unit["Unit"]
    # Nothing may stat the mountpoint before the daemon runs: a kept mount waits for it.
    assert "ExecStartPre" not in service
    assert service["ExecStart"] == [f"{INSTALLED_BINARY} --fd-store {MOUNTPOINT}"]
    # The connection outlives the daemon (tests/integration/test_fd_store.py); nothing
    # may detach the mount after the process ends, or a restart would find it gone.
    assert service["FileDescriptorStoreMax"] == ["1"]
    assert "ExecStopPost" not in service
    assert service["KillMode"] == ["process"]
    assert service["Restart"] == ["on-failure"]
    assert service["ExecReload"] == ["/bin/kill -USR1 $MAINPID"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["OOMScoreAdjust"] == ["-1000"]
    assert service["Delegate"] == ["yes"]
    before = " ".join(order["Before"]).split()
    assert {"containerd.service", "docker.service", "lxc.service"} <= set(before)
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    """Verified as shipped, except ExecStart pointing at an executable that exists here
    (verify insists on it; the real one is installed as README.md describes)."""
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED_BINARY, str(stand_in_binary(tmp_path))))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ours = [line for line in result.stderr.splitlines() if UNIT.name in line]
    assert not ours, result.stderr


def run_lines(unit: Unit, key: str, replacements: dict[str, str]) -> None:
    for line in unit["Service"].get(key, []):
        argv, ignore = command(line, replacements)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
        assert ignore or result.returncode == 0, f"{key} {argv}: {result.stderr}"


class UnitRun:
    """What systemd does with the unit: ExecStartPre, ExecStart, ExecReload (the store of
    descriptors: fake_systemd.FakeSystemd)."""

    def __init__(self, unit: Unit, directory: Path) -> None:
        self.unit = unit
        self.mountpoint = directory / "var" / "lib" / "lxcfs"
        self.replacements = {
            INSTALLED_BINARY: str(stand_in_binary(directory)),
            MOUNTPOINT: str(self.mountpoint),
        }
        self.log_path = directory / "unit.log"
        self.daemon: Daemon | None = None

    def start(self) -> Daemon:
        run_lines(self.unit, "ExecStartPre", self.replacements)
        (line,) = self.unit["Service"]["ExecStart"]
        argv, _ = command(line, self.replacements)
        served_before = self._served()
        process = spawn_daemon(argv, self.log_path)
        self.daemon = Daemon(self.mountpoint, Path(), self.log_path, process, argv)
        wait_mounted(self.daemon)
        deadline = time.monotonic() + TIMEOUT
        while self._served() == served_before:  # this start's line, not the last one's
            assert process.poll() is None, self.daemon.log()
            assert time.monotonic() < deadline, self.daemon.log()
            time.sleep(0.02)
        return self.daemon

    def _served(self) -> int:
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count("INFO procfs_view.daemon: serving")

    def reload(self) -> None:
        assert self.daemon is not None
        pid = str(self.daemon.process.pid)
        run_lines(self.unit, "ExecReload", {**self.replacements, "$MAINPID": pid})

    def cleanup(self) -> None:
        if self.daemon is not None and self.daemon.process.poll() is None:
            self.daemon.process.kill()
            self.daemon.process.wait(timeout=TIMEOUT)
        detach_all(self.mountpoint)


@pytest.mark.fuse
def test_start_reload_and_stop_as_systemd_runs_them(unit: Unit, tmp_path: Path) -> None:
    run = UnitRun(unit, tmp_path)
    try:
        daemon = run.start()
        assert daemon.path("proc/meminfo").read_text().startswith("MemTotal:")
        run.reload()
        daemon.wait_for_log("SIGUSR1: reloaded")
        assert is_mounted(run.mountpoint)
        # KillMode=process: systemd sends SIGTERM to the main process only.
        daemon.send(signal.SIGTERM)
        assert daemon.process.wait(timeout=TIMEOUT) == 0
        assert not is_mounted(run.mountpoint)  # no store without systemd: unmounted
    finally:
        run.cleanup()


@pytest.mark.fuse
def test_a_restart_after_a_crash_mounts_over_the_dead_mount(unit: Unit, tmp_path: Path) -> None:
    """Restart=on-failure after a crash with no store to keep the connection (systemd
    without FileDescriptorStoreMax=): the next start detaches the dead mount itself."""
    run = UnitRun(unit, tmp_path)
    try:
        daemon = run.start()
        daemon.process.kill()
        daemon.process.wait(timeout=TIMEOUT)
        assert is_mounted(run.mountpoint)
        with pytest.raises(OSError, match="not connected"):
            os.statvfs(run.mountpoint)
        restarted = run.start()
        assert restarted.path("proc/meminfo").read_text().startswith("MemTotal:")
        assert "detaching the dead" in restarted.log()
        restarted.send(signal.SIGTERM)
        assert restarted.process.wait(timeout=TIMEOUT) == 0
        assert not is_mounted(run.mountpoint)
    finally:
        run.cleanup()


@pytest.mark.fuse
def test_ready_is_notified_once_the_mount_answers(
    unit: Unit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Type=notify: systemd starts the Before= units (containerd, docker, lxc) only when
    the daemon says READY=1, so it must come when the files can be read, and STOPPING=1
    at SIGTERM."""
    run = UnitRun(unit, tmp_path)
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(TIMEOUT)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        daemon = run.start()
        try:
            # First the connection for the store (--fd-store), then READY=1.
            assert listener.recv(4096) == b"FDSTOREREMOVE=1\nFDNAME=fuse"
            assert listener.recv(4096) == b"FDSTORE=1\nFDNAME=fuse"  # its descriptor dropped
            assert listener.recv(4096) == b"READY=1"
            assert daemon.path("proc/meminfo").read_text().startswith("MemTotal:")
            daemon.send(signal.SIGTERM)
            assert listener.recv(4096) == b"STOPPING=1"
            assert daemon.process.wait(timeout=TIMEOUT) == 0
        finally:
            run.cleanup()
