"""Real mounts: start ``python -m procfs_view`` on a temporary directory, always clean up.

Every daemon started here is stopped by pid in teardown; a mount it left (a kill -9 test)
is detached; the session ends by checking /proc/self/mountinfo for new fuse.procfs-view
mounts, so a leak fails the run instead of piling up on the host.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.integration.helpers import (
    TIMEOUT,
    Daemon,
    StartDaemon,
    cgroups_unavailable,
    daemon_argv,
    detach_all,
    fuse_unavailable,
    is_mounted,
    mounts_of_ours,
    spawn_daemon,
    wait_mounted,
)


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_mounts() -> Iterator[None]:
    """Fail the session if the tests leave a fuse.procfs-view mount behind."""
    before = mounts_of_ours()
    yield
    leaked = mounts_of_ours() - before
    assert not leaked, f"tests left fuse.procfs-view mounts behind: {sorted(leaked)}"


@pytest.fixture(autouse=True)
def _requirements(request: pytest.FixtureRequest) -> None:
    """Skip, with the reason, what this machine cannot run (CI runs it all as root)."""
    if request.node.get_closest_marker("root") is not None:
        reason = cgroups_unavailable()
        if reason is not None:
            pytest.skip(reason)
    if request.node.get_closest_marker("fuse") is not None:
        reason = fuse_unavailable()
        if reason is not None:
            pytest.skip(reason)


@contextlib.contextmanager
def daemons(directory: Path) -> Iterator[StartDaemon]:
    """Start daemons under ``directory`` (by default on directory/mnt, waiting for the mount).

    On exit every daemon started is stopped (by pid), any mount left at their
    mountpoints (only those) is detached, and none may remain.
    """
    started: list[Daemon] = []
    runtime_dir = directory / "run"

    def start(
        mountpoint: Path | None = None,
        pidfile: Path | None = None,
        args: Sequence[str] = (),
        wait: bool = True,
        wrapper: Sequence[str] = (),
    ) -> Daemon:
        """``wrapper``: a command that execs the daemon's (``prlimit --nofile=...``)."""
        mountpoint = mountpoint or directory / "mnt"
        pidfile = pidfile or runtime_dir / "procfs-view.pid"
        log_path = directory / f"daemon-{len(started)}.log"
        argv = [*wrapper, *daemon_argv(mountpoint, pidfile, runtime_dir, *args)]
        daemon = Daemon(mountpoint, pidfile, log_path, spawn_daemon(argv, log_path), argv)
        started.append(daemon)
        if wait:
            wait_mounted(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in reversed(started):
            if daemon.process.poll() is None:
                daemon.process.send_signal(signal.SIGTERM)
                try:
                    daemon.process.wait(timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    daemon.process.kill()
                    daemon.process.wait(timeout=TIMEOUT)
        leftovers = {daemon.mountpoint for daemon in started if is_mounted(daemon.mountpoint)}
        for mountpoint in leftovers:
            detach_all(mountpoint)  # only our own temporary mountpoints
    assert not [m for m in leftovers if is_mounted(m)], "could not detach test mounts"


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    """Factory: start a daemon for this test (see ``daemons``)."""
    with daemons(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def shared_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One default daemon for a module's tests that only read (the cgroup2 VM starts
    Python ~10x slower, so a daemon per test would dominate its run)."""
    reason = fuse_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with daemons(tmp_path_factory.mktemp("shared")) as start:
        yield start()


@pytest.fixture
def mounted(start_daemon: StartDaemon) -> Daemon:
    """A running daemon with default options on a fresh temporary mountpoint."""
    return start_daemon()
