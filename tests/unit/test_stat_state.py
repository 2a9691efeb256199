"""/proc/stat across reads: counters never go back and busy never exceeds the quota."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from procfs_view.cgroup.records import CpuQuota, CpuTimes, CpuUsage
from procfs_view.host import CpuLine, HostStat
from procfs_view.options import ViewOptions
from procfs_view.service import StateStore
from procfs_view.views.cpus import VisibleCpus, visible_cpus
from procfs_view.views.stat import StatState, advance
from tests.fixtures import FixtureHost

HZ = 100
SECOND = 10**9


def host_stat(elapsed: list[int]) -> HostStat:
    per_cpu = tuple(
        CpuLine(f"cpu{i}", (e // 2, 0, e // 4, e - e // 2 - e // 4, 0, 0, 0, 0, 0, 0))
        for i, e in enumerate(elapsed)
    )
    total = tuple(sum(line.ticks[f] for line in per_cpu) for f in range(10))
    return HostStat(CpuLine("cpu", total), per_cpu, ("ctxt 1",))


def usage(user_s: float, system_s: float) -> CpuUsage:
    return CpuUsage(CpuTimes(int(user_s * SECOND), int(system_s * SECOND)))


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 500),  # host ticks elapsed per CPU since the last read
            st.integers(-50, 2000),  # cgroup user ticks gained (may jitter backwards)
            st.integers(-50, 500),  # cgroup system ticks gained
        ),
        min_size=2,
        max_size=30,
    ),
    quota=st.one_of(st.none(), st.floats(0.1, 4.0)),
)
def test_counters_never_decrease_and_busy_respects_quota(
    steps: list[tuple[int, int, int]], quota: float | None
) -> None:
    view = visible_cpus(tuple(range(4)), tuple(range(4)), CpuQuota(quota), cpu_view=True)
    elapsed, user, system = 10_000, 0, 0
    state: StatState | None = None
    previous = None
    for grown, user_gain, system_gain in steps:
        elapsed += grown
        user, system = max(0, user + user_gain), max(0, system + system_gain)
        lines, state = advance(
            host_stat([elapsed] * 4),
            usage(user / HZ, system / HZ),
            view,
            HZ,
            quota,
            state,
        )
        assert lines[0].ticks == tuple(sum(line.ticks[f] for line in lines[1:]) for f in range(10))
        if previous is not None:
            for now, before in zip(lines, previous, strict=True):
                assert all(a >= b for a, b in zip(now.ticks, before.ticks, strict=True))
            busy = sum(line.ticks[0] + line.ticks[2] for line in lines[1:]) - sum(
                line.ticks[0] + line.ticks[2] for line in previous[1:]
            )
            limit = view.count if quota is None else min(view.count, quota)
            assert busy <= limit * grown + view.count
            for now, before in zip(lines[1:], previous[1:], strict=True):
                assert sum(now.ticks[:8]) - sum(before.ticks[:8]) <= grown
        previous = lines


def test_first_read_then_growth(tmp_path: Path) -> None:
    view = VisibleCpus((0, 1), renumbered=True)
    lines, state = advance(host_stat([1000, 1000]), usage(2, 0), view, HZ, 1.0, None)
    assert [line.ticks[0] for line in lines] == [200, 100, 100]
    # 1 s passes; the cgroup claims 3 s of CPU (burst/skew): capped at quota 1 CPU x 1 s.
    lines, state = advance(host_stat([1100, 1100]), usage(5, 0), view, HZ, 1.0, state)
    assert lines[0].ticks[0] == 300
    assert sum(lines[0].ticks[:8]) == 2200


def test_changed_cpuset_restarts_from_the_stateless_view() -> None:
    _, state = advance(
        host_stat([1000, 1000]), usage(2, 0), VisibleCpus((0, 1), False), HZ, None, None
    )
    lines, _ = advance(
        host_stat([1000, 1000]), usage(2, 0), VisibleCpus((0,), False), HZ, None, state
    )
    assert [line.name for line in lines] == ["cpu", "cpu0"]


def test_state_store_is_bounded_and_forgets_removed_cgroups(tmp_path: Path) -> None:
    store: StateStore[int] = StateStore(capacity=3, prune_every=2)
    kept = tmp_path / "kept"
    kept.mkdir()
    for index in range(5):
        store.put(tmp_path / f"gone{index}", index)
    assert len(store) <= 3
    store.put(kept, 1)
    store.put(kept, 2)
    assert store.get(kept) == 2
    assert len(store) == 1


def test_service_keeps_stat_monotonic_across_reads(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")
    host.add_process(900, "/ct", namespace="ct", nspid=(900, 1))
    host.set_cpu("/ct", "0-1", (150000, 100000), {0: (5 * SECOND, SECOND)})
    service = host.service(ViewOptions(cpu_view=True))
    first = service.render("proc/stat", 900)
    # usage reported lower (a racing read, or a counter reset): nothing goes back.
    host.set_cpu("/ct", "0-1", (150000, 100000), {0: (SECOND, 0)})
    second = service.render("proc/stat", 900)
    before = [int(v) for v in first.split(b"\n")[0].split()[1:]]
    after = [int(v) for v in second.split(b"\n")[0].split()[1:]]
    assert all(a >= b for a, b in zip(after, before, strict=True))
    assert len(service.stat_states) == 1
