"""packaging/lxc/mount.hook against a directory tree standing in for a container's root,
with a real daemon's mount as the source. Each run is inside ``unshare -m`` (private
propagation), so its binds vanish with that namespace and never reach the host."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from procfs_view.registry import SERVED_FILES
from tests.integration.helpers import REPO, TIMEOUT, Daemon, StartDaemon

HOOK = REPO / "packaging" / "lxc" / "mount.hook"
CONFIG = REPO / "packaging" / "lxc" / "procfs-view.conf"
pytestmark = pytest.mark.fuse

# Run the hook, then report every bind under the rootfs and each target's device number.
_IN_NAMESPACE = r"""
set -e
"$HOOK"
awk -v root="$LXC_ROOTFS_MOUNT/" \
    'index($5, root) == 1 { print "bound=" substr($5, length(root) + 1) }' /proc/self/mountinfo
for f in $FILES; do echo "dev $f $(stat -c %d "$LXC_ROOTFS_MOUNT/$f")"; done
"""


def hook_files() -> list[str]:
    text = HOOK.read_text()
    found = re.search(r'^files="([^"]*)"', text, re.MULTILINE)
    assert found, "no files= list in the hook"
    return found.group(1).split()


def test_hook_binds_every_served_file() -> None:
    assert sorted(hook_files()) == sorted(served.path for served in SERVED_FILES)


def test_config_snippet_installs_the_hook() -> None:
    lines = [
        line.strip()
        for line in CONFIG.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines == ["lxc.hook.mount = /usr/share/procfs-view/lxc/mount.hook"]
    assert os.access(HOOK, os.X_OK)


def make_rootfs(root: Path, files: list[str]) -> None:
    for relative in files:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("container's own\n")


def run_hook(rootfs: Path, mount: Path) -> tuple[int, set[str], dict[str, int]]:
    """(exit status, paths bound under rootfs, device of each target) seen in the namespace."""
    env = dict(os.environ)
    env.update(
        HOOK=str(HOOK),
        LXC_ROOTFS_MOUNT=str(rootfs),
        PROCFS_VIEW_MOUNT=str(mount),
        FILES=" ".join(hook_files()),
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", _IN_NAMESPACE],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    bound = {
        line.removeprefix("bound=")
        for line in result.stdout.splitlines()
        if line.startswith("bound=")
    }
    devices: dict[str, int] = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["dev"] and len(parts) == 3 and parts[2].isdigit():
            devices[parts[1]] = int(parts[2])
    return result.returncode, bound, devices


def assert_nothing_leaked(rootfs: Path) -> None:
    mountinfo = Path("/proc/self/mountinfo").read_text()
    assert str(rootfs) not in mountinfo


def test_binds_each_served_file_that_exists_on_both_sides(
    shared_mount: Daemon, tmp_path: Path
) -> None:
    rootfs = tmp_path / "rootfs"
    # The container has no /proc/swaps: that one is skipped (a bind needs a target).
    container_files = [f for f in hook_files() if f != "proc/swaps"]
    make_rootfs(rootfs, container_files)
    served_here = [f for f in hook_files() if os.path.exists(shared_mount.path(f))]
    status, bound, devices = run_hook(rootfs, shared_mount.mountpoint)
    assert status == 0
    expected = set(served_here) - {"proc/swaps"}
    assert {"proc/meminfo", "proc/cpuinfo", "sys/devices/system/cpu/online"} <= expected
    assert bound == expected, (bound, expected)
    mount_device = os.stat(shared_mount.path("proc/meminfo")).st_dev
    for relative in container_files:
        on_mount = devices[relative] == mount_device
        assert on_mount is (relative in expected), relative
    assert_nothing_leaked(rootfs)
    # Outside the namespace the container's files are untouched.
    assert (rootfs / "proc" / "meminfo").read_text() == "container's own\n"


def test_does_nothing_when_the_source_is_a_plain_directory(tmp_path: Path) -> None:
    rootfs, fake_mount = tmp_path / "rootfs", tmp_path / "lxcfs"
    make_rootfs(rootfs, hook_files())
    make_rootfs(fake_mount, hook_files())
    status, bound, _ = run_hook(rootfs, fake_mount)
    assert (status, bound) == (0, set())


def test_does_nothing_when_the_daemon_is_dead(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = start_daemon()
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=TIMEOUT)
    rootfs = tmp_path / "rootfs"
    make_rootfs(rootfs, hook_files())
    status, bound, _ = run_hook(rootfs, daemon.mountpoint)
    assert (status, bound) == (0, set())
    assert_nothing_leaked(rootfs)
