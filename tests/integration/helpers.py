"""Helpers for the real-mount tests: start a daemon, find our mounts, parse answers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FSTYPE = "fuse.procfs-view"
IN_VM = os.environ.get("PROCFS_VIEW_CGROUP2_VM") == "1"
# The cgroup2 VM is emulated in software: Python starts ~10x slower there.
TIMEOUT = 120.0 if IN_VM else 20.0
MIB = 1024 * 1024


def fuse_unavailable() -> str | None:
    """Why a real FUSE mount cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (mounts with allow_other, creates cgroups)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (Debian package fuse3)"
    return None


def cgroups_unavailable() -> str | None:
    reason = fuse_unavailable()
    if reason is not None:
        return reason
    from tests.cgroups import can_make_cgroups

    return can_make_cgroups()


def mounts_of_ours() -> set[tuple[str, str]]:
    """(mount id, mount point) of every fuse.procfs-view mount in our namespace."""
    found: set[tuple[str, str]] = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields = before.split()
        if after.split()[:1] == [FSTYPE]:
            found.add((fields[0], fields[4].replace("\\040", " ")))
    return found


def is_mounted(path: Path) -> bool:
    return any(point == str(path) for _, point in mounts_of_ours())


@dataclass
class Daemon:
    """One procfs-view daemon process started by a test."""

    mountpoint: Path
    pidfile: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    argv: list[str] = field(default_factory=list)

    def path(self, relative: str) -> Path:
        return self.mountpoint / relative

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_for_log(self, text: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon never logged {text!r}; log:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM and wait; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


StartDaemon = Callable[..., Daemon]


def daemon_argv(mountpoint: Path, pidfile: Path, runtime_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "procfs_view",
        "--pidfile",
        str(pidfile),
        "--runtime-dir",
        str(runtime_dir),
        *extra,
        str(mountpoint),
    ]


def spawn_daemon(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            list(argv), stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )


def detach_all(mountpoint: Path) -> None:
    """Lazily detach every mount stacked at ``mountpoint`` (a test's own temporary one),
    live or dead: a reader may still hold a file."""
    for _ in range(16):
        if not is_mounted(mountpoint):
            return
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)


def wait_mounted(daemon: Daemon, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    # The log line, not the mount table: a dead mount left by a killed daemon looks mounted.
    while not (is_mounted(daemon.mountpoint) and "serving " in daemon.log()):
        if daemon.process.poll() is not None:
            raise AssertionError(
                f"daemon exited with {daemon.process.returncode} before mounting:\n{daemon.log()}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"daemon did not mount within {timeout}s:\n{daemon.log()}")
        time.sleep(0.02)


def host_meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    raise KeyError(key)


def meminfo_kb(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    raise KeyError(f"{key} not in:\n{text}")


def kill_started(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGKILL a process this test started (by pid), reap it and close its pipes."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=TIMEOUT)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


# The files a container runtime (or the Kubernetes webhooks) bind over the real ones.
BOUND_FILES = (
    "proc/meminfo",
    "proc/cpuinfo",
    "proc/stat",
    "proc/uptime",
    "proc/loadavg",
    "proc/swaps",
    "sys/devices/system/cpu/online",
)

# Runs in a private mount namespace (unshare -m makes propagation private, so nothing
# leaks to the host and every bind disappears with the namespace when the command exits).
_BIND_AND_EXEC = """
set -e
for f in $PROCFS_VIEW_FILES; do mount --bind "$PROCFS_VIEW_MNT/$f" "/$f"; done
exec "$@"
"""


def in_view_argv(argv: Sequence[str]) -> list[str]:
    """argv that runs ``argv`` with the mount's files bound over /proc and /sys."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", _BIND_AND_EXEC, "sh", *argv]


def in_view_env(mountpoint: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PROCFS_VIEW_MNT"] = str(mountpoint)
    env["PROCFS_VIEW_FILES"] = " ".join(BOUND_FILES)
    env.setdefault("TERM", "dumb")
    env["LC_ALL"] = "C"
    return env


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``procfs-view ARGS...`` from this checkout and capture its output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "procfs_view", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=TIMEOUT,
        check=False,
    )
