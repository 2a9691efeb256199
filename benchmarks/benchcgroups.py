"""Many short-lived cgroups with sleeping processes, for the scale benchmarks.

Named ``procfs-view-bench-<random>-<i>`` in the hierarchy owning one controller; the
processes are killed by pid and the cgroups removed on exit, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procfs_view.cgroup import discover_layout


@contextlib.contextmanager
def bench_cgroups(
    controller: str,
    count: int,
    processes_each: int = 1,
    configure: Callable[[Path, int], None] | None = None,
) -> Iterator[list[Path]]:
    """``count`` cgroups, each configured by ``configure(directory, index)`` and holding
    ``processes_each`` sleeping processes."""
    hierarchy = discover_layout().hierarchy_for(controller)
    if hierarchy is None:
        raise SystemExit(f"no {controller} cgroup controller")
    prefix = f"procfs-view-bench-{secrets.token_hex(3)}"
    directories: list[Path] = []
    sleepers: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(count):
            directory = hierarchy.mount_point / f"{prefix}-{index}"
            directory.mkdir()
            directories.append(directory)
            if configure is not None:
                configure(directory, index)
            procs = str(directory / "cgroup.procs")

            def join(procs: str = procs) -> None:
                with open(procs, "w") as handle:
                    handle.write(str(os.getpid()))

            for _ in range(processes_each):
                sleepers.append(subprocess.Popen(["sleep", "3600"], preexec_fn=join))
        yield directories
    finally:
        for sleeper in sleepers:
            with contextlib.suppress(ProcessLookupError):
                sleeper.kill()
            sleeper.wait()
        for directory in directories:
            for _attempt in range(100):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
