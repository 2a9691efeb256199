"""Re-attaching a dead bind where the kernel cannot slide a mount beneath: before Linux
6.5, and on any kernel for a locked bind (a nested user namespace's copy).

Before 6.5 is reproduced on this kernel by making ``MOVE_MOUNT_BENEATH`` an unknown flag
(EINVAL, as an old kernel answers) in a private mount namespace: a daemon's file bound
over a file standing in for /proc/meminfo, the daemon killed, the worker's ``_replace``
run. The locked bind is a real one: a process under ``unshare -U -r -m`` holds a copy of
that bind, and a second daemon re-attaches both.
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
print(remount.why_stacked())
print(target.read_text().strip())
# The dead bind is still there, under the fresh one: it was never detached, so nothing
# showed the file below it (the host's numbers), not even between two syscalls.
at_target = [line for line in open("/proc/self/mountinfo") if line.split()[4] == str(target)]
print(len(at_target), "mounts")
subprocess.run(["umount", "-l", str(mnt)], check=False)
"""


def _in_private_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (argv[1]: ``tmp_path``) in a mount namespace of its own, so the mounts
    it makes and breaks never reach the host's."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", script,
         str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_without_move_beneath_the_container_never_sees_the_file_below(tmp_path: Path) -> None:
    result = _in_private_namespace(SCRIPT, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "stacked",
        "this kernel has no MOVE_MOUNT_BENEATH (Linux < 6.5)",
        "a fresh bind",
        "2 mounts",
    ]


# argv: work directory. A daemon's meminfo bound over a stand-in, a process in a nested
# user and mount namespace holding a (locked) copy of that bind, the daemon killed and
# started again. Prints, per namespace, the re-attach's log status for the bind and the
# number of mounts at it, then what the nested process reads there.
LOCKED_SCRIPT = r"""
import os, re, subprocess, sys, time
from pathlib import Path
work = Path(sys.argv[1])
mnt, target = work / "m", work / "meminfo"
mnt.mkdir(); target.write_text("the host's own numbers\n")
started = []

def start(n):
    log = work / f"daemon-{n}.log"
    with log.open("w") as out:
        started.append(subprocess.Popen(
            [sys.executable, "-m", "procfs_view", "--pidfile", str(work / "p"),
             "--runtime-dir", str(work), str(mnt)], stdout=out, stderr=subprocess.STDOUT))
    for _ in range(400):
        if "re-attach done" in log.read_text():
            return log.read_text()
        time.sleep(0.05)
    raise SystemExit(f"daemon {n} did not finish its re-attach: {log.read_text()}")

def mounts_at(pid):
    return sum(1 for line in open(f"/proc/{pid}/mountinfo") if line.split()[4] == str(target))

try:
    start(0)
    subprocess.run(["mount", "--bind", str(mnt / "proc" / "meminfo"), str(target)], check=True)
    nested = subprocess.Popen(["unshare", "-U", "-r", "-m", "sh", "-c",
                               "echo ready; exec sleep 60"], stdout=subprocess.PIPE, text=True)
    started.append(nested)
    if nested.stdout.readline().strip() != "ready":
        raise SystemExit("unshare -U -r -m failed")
    started[0].kill(); started[0].wait()
    log = start(1)
    for pid in (os.getpid(), nested.pid):
        namespace = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        found = re.search(rf"mnt:\[{namespace}\] {re.escape(str(target))} \(.*?\): (.*)", log)
        print(found.group(1) if found else f"no log line for mnt:[{namespace}]: {log}")
        print(mounts_at(pid), "mounts")
    print(open(f"/proc/{nested.pid}/root{target}").readline().split(":")[0])
finally:
    for process in reversed(started):
        process.kill()
        process.wait()
    subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_locked_bind_in_a_nested_user_namespace_is_stacked_and_says_so(
    tmp_path: Path,
) -> None:
    """The kernel will not slide a mount beneath a locked one, even on 6.5+: that copy
    gets the fresh bind stacked on top (the dead one stays below it), and its log line
    says so instead of "fixed"; the unlocked bind in our namespace is slid beneath."""
    from procfs_view.remount import moves_beneath

    if not moves_beneath():
        pytest.skip("no MOVE_MOUNT_BENEATH on this kernel: every bind is stacked")
    result = _in_private_namespace(LOCKED_SCRIPT, tmp_path)
    if "unshare -U -r -m failed" in result.stderr:
        pytest.skip("user namespaces are not available here")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "fixed",
        "1 mounts",
        "stacked on the dead bind, which stays below it (MOVE_MOUNT_BENEATH refused: a locked"
        " bind, as in a nested user namespace)",
        "2 mounts",
        "MemTotal",
    ], result.stdout + result.stderr
