"""Real test cgroups on this host (v1, v2 or hybrid), owned by the tests and removed after.

Every cgroup made here is named ``procfs-view-test-<random>``, created at the root of each
hierarchy that owns one of the controllers we use, and removed on exit after the
processes the tests started in it are killed (by pid). Existing cgroups are never written.

On v1 the cgroup is made and configured through cgroupspy (``Node.create_cgroup`` and the
controller properties); cgroupspy knows only v1 and only hierarchies whose mount directory
is named after one controller, so v2 and co-mounted (``cpu,cpuacct``) hierarchies are
written directly.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgroupspy.nodes import Node

from procfs_view.cgroup import CgroupLayout, Hierarchy, discover_layout

CONTROLLERS = ("memory", "cpuset", "cpu", "cpuacct", "blkio", "io", "pids")


def host_layout() -> CgroupLayout:
    return discover_layout(Path("/proc"), Path("/sys/fs/cgroup"))


def v1_kernel_counts_io_per_cgroup() -> bool:
    """Whether the v1 throttle layer or BFQ has counted any I/O at the blkio root: since
    Linux 6.10 the throttle layer counts only once a throttle rule is set, so a v1 host
    may count no I/O per cgroup at all (procfs-view then serves the host's diskstats)."""
    blkio = host_layout().hierarchy_for("blkio")
    if blkio is None:
        return False
    for layer in ("throttle", "bfq"):
        totals = blkio.mount_point / f"blkio.{layer}.io_serviced_recursive"
        if totals.exists() and any(
            line.startswith("Total") and line.split()[-1] != "0"
            for line in totals.read_text().splitlines()
        ):
            return True
    return False


def can_make_cgroups() -> str | None:
    """Why real test cgroups cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    layout = host_layout()
    if layout.hierarchy_for("memory") is None:
        return "no memory cgroup controller on this host"
    return None


@dataclass
class TestCgroup:
    """A cgroup made for one test, present in every hierarchy we use."""

    __test__ = False  # not a pytest class

    name: str
    directories: dict[Hierarchy, Path]
    started: list[subprocess.Popen[Any]] = field(default_factory=list)

    def directory(self, controller: str) -> Path:
        """Directory of this cgroup in the hierarchy owning ``controller``."""
        for hierarchy, path in self.directories.items():
            if controller in hierarchy.controllers:
                return path
        raise KeyError(controller)

    @property
    def version(self) -> int:
        return next(h.version for h in self.directories if "memory" in h.controllers)

    def attach(self, pid: int) -> None:
        """Move ``pid`` into this cgroup in every hierarchy."""
        for path in self.directories.values():
            (path / "cgroup.procs").write_text(f"{pid}\n")

    def spawn(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` already inside this cgroup (it joins before exec)."""
        procs_files = [str(p / "cgroup.procs") for p in self.directories.values()]

        def join() -> None:
            for procs in procs_files:
                with open(procs, "w") as handle:
                    handle.write(str(os.getpid()))

        process: subprocess.Popen[Any] = subprocess.Popen(argv, preexec_fn=join, **popen_kwargs)
        self.started.append(process)
        return process

    def run(self, argv: Sequence[str], timeout: float = 60, **kwargs: Any) -> str:
        """Run ``argv`` inside this cgroup to completion and return its stdout (text)."""
        process = self.spawn(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
        )
        out, err = process.communicate(timeout=timeout)
        if process.returncode != 0:
            raise subprocess.CalledProcessError(process.returncode, list(argv), out, err)
        return str(out)

    def pids(self) -> list[int]:
        pids: set[int] = set()
        for path in self.directories.values():
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return sorted(pids)


def _hierarchies(layout: CgroupLayout) -> list[Hierarchy]:
    wanted: list[Hierarchy] = []
    for controller in CONTROLLERS:
        hierarchy = layout.hierarchy_for(controller)
        if hierarchy is not None and hierarchy not in wanted:
            wanted.append(hierarchy)
    return wanted


def _make_v1(hierarchy: Hierarchy, name: str) -> Path:
    """Create through cgroupspy when the hierarchy is one it understands."""
    mount_name = hierarchy.mount_point.name
    if mount_name in {"memory", "cpuset", "cpu", "cpuacct", "blkio"}:
        root = Node(str(hierarchy.mount_point.parent).encode())
        controller_root = Node(mount_name.encode(), parent=root)
        node = controller_root.create_cgroup(name)
        if mount_name == "cpuset":
            parent = controller_root.controller
            node.controller.mems = parent.mems
            node.controller.cpus = parent.cpus
        return Path(node.full_path.decode())
    path = hierarchy.mount_point / name
    path.mkdir()
    if "cpuset" in hierarchy.controllers:
        for knob in ("cpuset.mems", "cpuset.cpus"):
            (path / knob).write_text((hierarchy.mount_point / knob).read_text())
    return path


def configure(
    cgroup: TestCgroup,
    memory_limit: int | None = None,
    cpus: str | None = None,
    cfs: tuple[int, int] | None = None,
    swap_limit: int | None = None,
) -> None:
    """Set limits: memory in bytes, cpuset list, CFS (quota_us, period_us), swap in bytes."""
    v2 = cgroup.version == 2
    if memory_limit is not None:
        memory = cgroup.directory("memory")
        (memory / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(memory_limit))
    if swap_limit is not None:
        memory = cgroup.directory("memory")
        if v2:
            (memory / "memory.swap.max").write_text(str(swap_limit))
        else:
            (memory / "memory.memsw.limit_in_bytes").write_text(
                str((memory_limit or 0) + swap_limit)
            )
    if cpus is not None:
        (cgroup.directory("cpuset") / "cpuset.cpus").write_text(cpus)
    if cfs is not None:
        cpu = cgroup.directory("cpu")
        quota, period = cfs
        if v2:
            (cpu / "cpu.max").write_text(f"{quota} {period}")
        else:
            (cpu / "cpu.cfs_period_us").write_text(str(period))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))


def _remove(cgroup: TestCgroup) -> None:
    for process in cgroup.started:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    for path in cgroup.directories.values():
        for _attempt in range(100):
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


@contextlib.contextmanager
def test_cgroup(
    memory_limit: int | None = None,
    cpus: str | None = None,
    cfs: tuple[int, int] | None = None,
    swap_limit: int | None = None,
) -> Iterator[TestCgroup]:
    """A fresh ``procfs-view-test-<random>`` cgroup with the given limits; removed on exit."""
    layout = host_layout()
    name = f"procfs-view-test-{secrets.token_hex(4)}"
    cgroup = TestCgroup(name, {})
    try:
        for hierarchy in _hierarchies(layout):
            if hierarchy.version == 1:
                cgroup.directories[hierarchy] = _make_v1(hierarchy, name)
            else:
                path = hierarchy.mount_point / name
                path.mkdir()
                cgroup.directories[hierarchy] = path
        configure(cgroup, memory_limit, cpus, cfs, swap_limit)
        yield cgroup
    finally:
        _remove(cgroup)


test_cgroup.__test__ = False  # type: ignore[attr-defined]
