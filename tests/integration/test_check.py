"""``procfs-view check``, the liveness probe: 0 on a live mount (also through a symlinked
parent), 1 with a one-line reason on a plain directory, a missing path, a dead mount
(kill -9) and a hung daemon (SIGSTOP)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import TIMEOUT, Daemon, StartDaemon, run_cli

pytestmark = pytest.mark.fuse


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("check", *args)


def assert_fails(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("procfs-view check: ")
    for word in words:
        assert word in lines[0], lines[0]


def test_live_mount_passes(mounted: Daemon) -> None:
    result = run_check(str(mounted.mountpoint))
    assert result.returncode == 0, result.stderr
    assert "serving" in result.stdout


def test_mount_reached_through_a_symlinked_parent_passes(mounted: Daemon, tmp_path: Path) -> None:
    """The daemon resolves symlinks in its mountpoint's parent (mountinfo shows the
    resolved path), and so must the check: it used to say "not mounted" here."""
    alias = tmp_path / "alias"
    alias.symlink_to(mounted.mountpoint.parent, target_is_directory=True)
    result = run_check(str(alias / mounted.mountpoint.name))
    assert result.returncode == 0, result.stderr
    assert "serving" in result.stdout


def test_plain_directory_fails(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text("MemTotal: 1 kB\n")
    assert_fails(run_check(str(tmp_path)), "not mounted")


def test_missing_path_fails(tmp_path: Path) -> None:
    assert_fails(run_check(str(tmp_path / "nowhere")), "does not exist")


def test_dead_mount_fails(start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    daemon.process.kill()
    daemon.process.wait(timeout=TIMEOUT)
    assert_fails(run_check(str(daemon.mountpoint)), "dead mount", "not connected")
    # (the fixture detaches the dead mount)


def test_hung_daemon_fails_after_the_timeout(start_daemon: StartDaemon) -> None:
    """The documented 2 s: a stopped daemon never answers, and the check still returns."""
    daemon = start_daemon()
    daemon.send(signal.SIGSTOP)
    try:
        result = run_check(str(daemon.mountpoint))
    finally:
        daemon.send(signal.SIGCONT)
    assert_fails(result, "no answer within 2 s")
    # The daemon answers the abandoned request and goes on serving.
    assert daemon.path("proc/meminfo").read_text().startswith("MemTotal:")


def test_probe_loads_neither_the_views_nor_the_fuse_stack(mounted: Daemon) -> None:
    """A probe runs every few seconds on every node: importing trio, pyfuse3 and the views
    for it cost 0.45 s of CPU per run; it needs only mountinfo and one read."""
    script = (
        "import sys\n"
        "from procfs_view.cli import main\n"
        f"code = main(['check', {str(mounted.mountpoint)!r}])\n"
        "heavy = {'trio', 'pyfuse3', 'procfs_view.registry', 'procfs_view.service'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]", result.stdout
