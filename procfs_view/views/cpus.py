"""Which CPUs a container sees: shared by the cpuinfo, stat and online views so they agree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from procfs_view.cgroup.records import CpuQuota


@dataclass(frozen=True)
class VisibleCpus:
    """The physical CPUs shown, and whether they are renumbered 0..N-1 (CPU view on)."""

    physical: tuple[int, ...]
    renumbered: bool

    @property
    def count(self) -> int:
        return len(self.physical)

    def shown_number(self, index: int) -> int:
        """The number under which the ``index``-th visible CPU is shown."""
        return index if self.renumbered else self.physical[index]


def visible_cpus(
    cpuset: Sequence[int] | None,
    host_online: Sequence[int],
    quota: CpuQuota,
    cpu_view: bool,
) -> VisibleCpus:
    """The cpuset (restricted to online CPUs); with the CPU view, at most ceil(quota) of them.

    Never empty: a cpuset with no online CPU (hot-unplug race, garbage) shows the host's
    online CPUs rather than a machine with zero processors. The count never derives from
    cpu.shares/cpu.weight (lxcfs#600).
    """
    online = set(host_online)
    cpus = tuple(sorted(c for c in (cpuset or host_online) if not online or c in online))
    if not cpus:
        cpus = tuple(sorted(online)) or (0,)
    if not cpu_view:
        return VisibleCpus(cpus, renumbered=False)
    count = len(cpus)
    # A non-finite quota (inf, nan) is no limit: math.ceil would raise on it.
    if quota.cpus is not None and math.isfinite(quota.cpus) and quota.cpus > 0:
        count = max(1, min(count, math.ceil(quota.cpus)))
    return VisibleCpus(cpus[:count], renumbered=True)
