"""Re-attaching a dead bind where the kernel cannot slide a mount beneath (Linux < 6.5).

Reproduced on this kernel by making ``MOVE_MOUNT_BENEATH`` an unknown flag (EINVAL, as an
old kernel answers) in a private mount namespace: a daemon's file bound over a file
standing in for /proc/meminfo, the daemon killed, the worker's ``_replace`` run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("real_cgroups")]

REPO = Path(__file__).resolve().parents[2]

# argv: work directory. Prints _replace's answer, what the stand-in shows after it, and
# how many mounts are stacked there.
SCRIPT = r"""
import os, signal, subprocess, sys, time
from pathlib import Path
from procfs_view import remount
work = Path(sys.argv[1])
mnt, target, fresh = work / "m", work / "meminfo", work / "fresh"
mnt.mkdir(); target.write_text("the host's own numbers\n"); fresh.write_text("a fresh bind\n")
daemon = subprocess.Popen([sys.executable, "-m", "procfs_view", "--pidfile", str(work / "p"),
                           "--runtime-dir", str(work), str(mnt)])
for _ in range(100):
    if (mnt / "proc" / "meminfo").exists():
        break
    time.sleep(0.1)
subprocess.run(["mount", "--bind", str(mnt / "proc" / "meminfo"), str(target)], check=True)
daemon.kill(); daemon.wait()
fd = os.open(target, os.O_PATH)
mount_id = remount.mount_id_of(fd)
os.close(fd)
remount.MOVE_MOUNT_BENEATH = 1 << 30  # unknown to the kernel: EINVAL, as before 6.5
tree = remount.open_tree_clone(fresh)
print(remount._replace(bytes(target), mount_id, tree))
print(target.read_text().strip())
# The dead bind is still there, under the fresh one: it was never detached, so nothing
# showed the file below it (the host's numbers), not even between two syscalls.
at_target = [line for line in open("/proc/self/mountinfo") if line.split()[4] == str(target)]
print(len(at_target), "mounts")
subprocess.run(["umount", "-l", str(mnt)], check=False)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_without_move_beneath_the_container_never_sees_the_file_below(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", SCRIPT,
         str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["fixed", "a fresh bind", "2 mounts"]
