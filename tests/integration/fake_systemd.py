"""What systemd does for our unit (Type=notify, FileDescriptorStoreMax=1), done in the
test: a notification socket, a file descriptor store fed by FDSTORE=1 / FDSTOREREMOVE=1,
the stored descriptors passed to the next start as sd_listen_fds(3) describes (numbers
3 and up, $LISTEN_PID, $LISTEN_FDS, $LISTEN_FDNAMES), kept across a restart or a crash,
closed at a stop. This machine's init is not systemd, so the protocol is what is tested.
"""

from __future__ import annotations

import array
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.helpers import REPO, TIMEOUT, Daemon, daemon_argv, detach_all

#: Puts the descriptors given after the names at 3, 4, ... and execs the command after
#: "--" (the same pid, as systemd's fork does) with sd_listen_fds(3)'s variables.
_EXEC_WITH_FDS = """
import fcntl, os, sys
split = sys.argv.index("--")
names, fds, argv = sys.argv[1], [int(fd) for fd in sys.argv[2:split]], sys.argv[split + 1:]
parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # above any number we give
for fd in fds:
    os.close(fd)
for number, fd in enumerate(parked, start=3):
    os.dup2(fd, number)
    os.close(fd)
if fds:
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=names)
os.execv(argv[0], argv)
"""


class FakeSystemd:
    """One unit's supervisor: start, crash, restart and stop a daemon at ``mountpoint``."""

    def __init__(self, directory: Path, *daemon_args: str, fd_store: bool = True) -> None:
        self.directory = directory
        self.mountpoint = directory / "mnt"
        self.daemon_args = (*(["--fd-store"] if fd_store else []), *daemon_args)
        self.address = str(directory / "notify")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.address)
        #: (name, descriptor) in the order stored, as systemd passes them.
        self.stored: list[tuple[str, int]] = []
        self.states: list[str] = []
        self.daemons: list[Daemon] = []

    def _receive(self, timeout: float) -> bool:
        self.socket.settimeout(timeout)
        try:
            message, ancillary, _, _ = self.socket.recvmsg(4096, socket.CMSG_SPACE(4 * 16))
        except TimeoutError:
            return False
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        fields = dict(
            line.partition("=")[::2] for line in message.decode().splitlines() if "=" in line
        )
        name = fields.get("FDNAME", "stored")
        if fields.get("FDSTORE") == "1":
            self.stored.extend((name, fd) for fd in fds)
        else:
            for fd in fds:
                os.close(fd)
        if fields.get("FDSTOREREMOVE") == "1":
            for entry in [entry for entry in self.stored if entry[0] == name]:
                self.stored.remove(entry)
                os.close(entry[1])
        self.states.extend(f"{key}={value}" for key, value in fields.items())
        return True

    def wait_for(self, state: str, timeout: float = TIMEOUT) -> None:
        """Take notifications until ``state`` (READY=1, STOPPING=1...) comes."""
        deadline = time.monotonic() + timeout
        while state not in self.states:
            left = deadline - time.monotonic()
            if left <= 0 or (self.daemons and self.daemons[-1].process.poll() is not None):
                while self._receive(0.05):
                    pass
                if state in self.states:
                    return
                log = self.daemons[-1].log() if self.daemons else ""
                raise AssertionError(f"no {state} notified; got {self.states}; log:\n{log}")
            self._receive(min(left, 0.2))

    def start(self) -> Daemon:
        """Start the daemon with the stored descriptors, and wait for READY=1."""
        self.states.clear()
        log_path = self.directory / f"daemon-{len(self.daemons)}.log"
        runtime_dir = self.directory / "run"
        argv = daemon_argv(
            self.mountpoint,
            runtime_dir / "procfs-view.pid",
            runtime_dir,
            *self.daemon_args,
        )
        fds = [fd for _, fd in self.stored]
        names = ":".join(name for name, _ in self.stored)
        env = dict(os.environ, NOTIFY_SOCKET=self.address)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("FDSTORE", None)
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-c", _EXEC_WITH_FDS, names, *map(str, fds), "--", *argv],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
                pass_fds=fds,
            )
        daemon = Daemon(self.mountpoint, runtime_dir / "procfs-view.pid", log_path, process, argv)
        self.daemons.append(daemon)
        self.wait_for("READY=1")
        return daemon

    def crash(self, daemon: Daemon) -> None:
        """SIGKILL: the store keeps its descriptors for the restart (Restart=on-failure)."""
        daemon.process.kill()
        daemon.process.wait(timeout=TIMEOUT)

    def terminate(self, daemon: Daemon) -> int:
        """SIGTERM (KillMode=process), as for a restart: the store is kept."""
        daemon.process.send_signal(signal.SIGTERM)
        return daemon.process.wait(timeout=TIMEOUT)

    def stop(self, daemon: Daemon) -> int:
        """``systemctl stop``: SIGTERM, then the unit is dead and its store is closed."""
        status = self.terminate(daemon)
        self.release()
        return status

    def release(self) -> None:
        for _, fd in self.stored:
            os.close(fd)
        self.stored.clear()

    def close(self) -> None:
        """Kill what is left, close the store (ending any connection), detach the mount."""
        for daemon in self.daemons:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait(timeout=TIMEOUT)
        self.release()
        self.socket.close()
        detach_all(self.mountpoint)
