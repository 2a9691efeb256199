"""A cgroup mount hidden under another is not the one we read (the DaemonSet's case).

A privileged pod gets its runtime's cgroup mount (on v1 binds of the pod's own cgroups)
at /sys/fs/cgroup, and the DaemonSet's hostPath volume binds the host's tree over it.
mountinfo lists both; only the top one is what the path shows. Reproduced with real
mounts in a private mount namespace: the hierarchy is bound over itself narrowed to one
cgroup (the "daemon's own"), then whole again on top.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cgroups import host_layout, test_cgroup

pytestmark = [pytest.mark.root, pytest.mark.cgroup2vm, pytest.mark.usefixtures("real_cgroups")]

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]

# $1 hierarchy mount point, $2 the narrow cgroup's name in it, then the command to run.
STACK_AND_EXEC = r"""
set -e
point=$1 narrow=$2; shift 2
whole=$(mktemp -d)
mount --bind "$point" "$whole"
umount -l "$point"
mount --bind "$whole/$narrow" "$point"
mount --bind "$whole" "$point"
umount -l "$whole"
exec "$@"
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_show_reads_other_cgroups_through_the_mount_on_top() -> None:
    memory = host_layout().hierarchy_for("memory")
    assert memory is not None
    with (
        test_cgroup(memory_limit=128 * MIB) as own,
        test_cgroup(memory_limit=192 * MIB) as other,
    ):
        sleeper = other.spawn(["sleep", "120"])
        narrow = own.directory("memory").relative_to(memory.mount_point)
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", STACK_AND_EXEC,
                "sh", str(memory.mount_point), str(narrow),
                sys.executable, "-m", "procfs_view", "show", "--pid", str(sleeper.pid),
                "meminfo"]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(REPO))
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
        mounts_seen = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", STACK_AND_EXEC, "sh",
             str(memory.mount_point), str(narrow), "grep", "-c", f" {memory.mount_point} ",
             "/proc/self/mountinfo"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert int(mounts_seen.stdout) >= 2  # both mounts are listed: the lower one is hidden
    assert "MemTotal:         196608 kB" in result.stdout.splitlines(), result.stdout
