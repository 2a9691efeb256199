"""Golden outputs: the exact bytes of meminfo, cpuinfo and stat for one container, v1 and v2.

The goldens in tests/data/golden were checked by hand against the formulas in
shared/reference/lxcfs-behaviour.md; regenerate with PROCFS_VIEW_REGEN_GOLDEN=1 only after
re-checking them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from procfs_view.options import ViewOptions
from tests.fixtures import DATA, FixtureHost

MIB = 1024 * 1024
GOLDEN = DATA / "golden"

CONTAINER_STAT = {
    "anon": 50 * MIB,
    "file": 40 * MIB,
    "shmem": 1 * MIB,
    "file_mapped": 5 * MIB,
    "anon_thp": 2 * MIB,
    "active_anon": 30 * MIB,
    "inactive_anon": 21 * MIB,
    "active_file": 30 * MIB,
    "inactive_file": 10 * MIB,
    "unevictable": 0,
    "file_dirty": 1 * MIB,
    "file_writeback": 0,
    "slab_reclaimable": 3 * MIB,
    "slab_unreclaimable": 1 * MIB,
}


def container(tmp_path: Path, kind: str) -> FixtureHost:
    """A container (pid 4242, its own pid namespace) limited to 256 MiB, cpuset 1-2, quota
    1.5 CPUs, 100 MiB used, 1 MiB swapped out of a 64 MiB swap limit."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(4242, "/ct", namespace="ct", nspid=(4242, 1), start_ticks=80000)
    host.set_memory(
        "/ct", 256 * MIB, 100 * MIB, CONTAINER_STAT, swap_limit=64 * MIB, swap_usage=1 * MIB
    )
    host.set_cpu(
        "/ct", "1-2", (150000, 100000), {1: (5_000_000_000, 1_000_000_000), 2: (2 * 10**9, 10**9)}
    )
    return host


@pytest.mark.parametrize("kind", ["v1", "v2"])
@pytest.mark.parametrize(
    ("path", "cpu_view"),
    [("proc/meminfo", False), ("proc/cpuinfo", False), ("proc/stat", False), ("proc/stat", True)],
)
def test_golden(tmp_path: Path, kind: str, path: str, cpu_view: bool) -> None:
    service = container(tmp_path, kind).service(ViewOptions(cpu_view=cpu_view))
    rendered = service.render(path, 4242).decode()
    suffix = "-cfs" if cpu_view else ""
    golden = GOLDEN / f"{kind}-{path.split('/')[-1]}{suffix}.txt"
    if os.environ.get("PROCFS_VIEW_REGEN_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    assert rendered == golden.read_text()
