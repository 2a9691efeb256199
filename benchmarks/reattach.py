"""How long a restarted daemon takes to re-attach the binds of N containers.

Not a test: run it as root from a checkout::

    python benchmarks/reattach.py [--namespaces 100] [--rounds 3]

Mounts procfs-view on a temporary directory, makes ``--namespaces`` private mount
namespaces (``unshare -m``, a sleeping process each) that bind the eight served files
over files of the temporary directory, as a container binds them over its /proc, then
``kill -9``s the daemon and starts another, ``--rounds`` times, and prints the
re-attach time the new daemon logs ("re-attach done: ... ms") and how many binds it
replaced. Everything is removed at the end (the namespaces die with their processes).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from procfs_view.webhook import INJECTED_FILES

#: The files LXCFS add-ons (and our webhook) bind into a container.
FILES = INJECTED_FILES
DONE = re.compile(
    r"re-attach done: (\d+) dead binds replaced .* in (\d+) of \d+ mount views, (\d+) ms"
)


def start_daemon(base: Path, log: Path) -> subprocess.Popen[bytes]:
    daemon = subprocess.Popen(
        [sys.executable, "-m", "procfs_view", "-d", "--runtime-dir", str(base / "run"),
         str(base / "mnt")],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError):  # the dead mount until the new one is in
            if (base / "mnt" / "proc" / "meminfo").exists():
                return daemon
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise RuntimeError(f"daemon did not start; see {log}")
        time.sleep(0.05)


def wait_for_done(log: Path, after: int) -> tuple[int, int, int]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        matches = DONE.findall(log.read_text()[after:])
        if matches:
            binds, views, ms = matches[-1]
            return int(binds), int(views), int(ms)
        time.sleep(0.1)
    raise RuntimeError(f"no re-attach line in {log}")


@contextlib.contextmanager
def containers(base: Path, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    targets = base / "targets"
    targets.mkdir()
    for name in FILES:
        (targets / name.replace("/", "-")).write_text("")
    script = " && ".join(
        f"mount --bind {base / 'mnt' / name} {targets / name.replace('/', '-')}" for name in FILES
    )
    started: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c"]
            started.append(subprocess.Popen([*argv, f"{script} && exec sleep 3600"]))
        time.sleep(1 + count / 100)
        yield started
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="procfs-view-bench-") as temporary:
        base = Path(temporary)
        (base / "mnt").mkdir()
        log = base / "daemon.log"
        daemon = start_daemon(base, log)
        try:
            with containers(base, args.namespaces):
                for round_number in range(args.rounds):
                    daemon.send_signal(signal.SIGKILL)
                    daemon.wait()
                    offset = len(log.read_text())
                    started = time.monotonic()
                    daemon = start_daemon(base, log)
                    binds, views, ms = wait_for_done(log, offset)
                    total = (time.monotonic() - started) * 1000
                    print(
                        f"round {round_number + 1}: {binds} binds in {views} mount views "
                        f"re-attached in {ms} ms ({ms / max(1, views):.1f} ms per view); "
                        f"start to done {total:.0f} ms"
                    )
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            subprocess.run(["fusermount3", "-u", "-z", str(base / "mnt")], check=False,
                           capture_output=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
