"""/proc/stat across reads: counters never go back and busy never exceeds the quota."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procfs_view.cgroup.records import CpuQuota, CpuTimes, CpuUsage
from procfs_view.host import CpuLine, HostStat
from procfs_view.options import ViewOptions
from procfs_view.service import StateStore
from procfs_view.views.cpus import VisibleCpus, visible_cpus
from procfs_view.views.stat import SYSTEM, USER, StatState, advance
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


def test_a_narrowed_cpuset_shows_the_cpus_left() -> None:
    _, state = advance(
        host_stat([1000, 1000]), usage(2, 0), VisibleCpus((0, 1), False), HZ, None, None
    )
    lines, _ = advance(
        host_stat([1000, 1000]), usage(2, 0), VisibleCpus((0,), False), HZ, None, state
    )
    assert [line.name for line in lines] == ["cpu", "cpu0"]


def test_a_widened_cpuset_does_not_take_counters_back() -> None:
    """v2 (usage spread evenly): cpuset 0-1 widened to 0-3 by ``docker update`` used to
    restart from the stateless view, taking cpu0's user from 550 to 300 ticks."""
    two, four = VisibleCpus((0, 1), False), VisibleCpus((0, 1, 2, 3), False)
    lines, state = advance(host_stat([1000] * 4), usage(2, 0), two, HZ, None, None)
    for second in range(1, 4):
        lines, state = advance(
            host_stat([1000 + 100 * second] * 4), usage(2 + 3 * second, 0), two, HZ, None, state
        )
    before = {line.name: line.ticks for line in lines}
    after, state = advance(host_stat([1400] * 4), usage(12, 0), four, HZ, None, state)
    assert [line.name for line in after] == ["cpu", "cpu0", "cpu1", "cpu2", "cpu3"]
    for line in after:
        if line.name in before:
            assert all(a >= b for a, b in zip(line.ticks, before[line.name], strict=True))
    # psutil.cpu_times() and cpu_times(percpu=True) agree: the aggregate is their sum.
    assert after[0].ticks == tuple(map(sum, zip(*(line.ticks for line in after[1:]), strict=True)))
    # And top's next refresh sees the four CPUs at the host's pace.
    later, _ = advance(host_stat([1500] * 4), usage(14, 0), four, HZ, None, state)
    for old, new in zip(after, later, strict=True):
        grown = [b - a for a, b in zip(old.ticks, new.ticks, strict=True)]
        assert min(grown) >= 0
        assert sum(grown[:8]) == (400 if new.name == "cpu" else 100)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sets(st.integers(0, 5), min_size=1),  # the cpuset at this read
            st.one_of(st.none(), st.floats(0.2, 7.0)),  # the quota, in CPUs
            st.integers(0, 500),  # host ticks elapsed per CPU since the last read
            st.integers(0, 3000),  # cgroup user ticks gained, per CPU
            st.integers(0, 800),  # cgroup system ticks gained, per CPU
        ),
        min_size=2,
        max_size=12,
    ),
    cpu_view=st.booleans(),
    per_cpu_usage=st.booleans(),  # v1's cpuacct.usage_all, or v2's totals only
    head_starts=st.lists(st.integers(0, 50_000), min_size=6, max_size=6),  # hot-added CPUs
)
def test_no_counter_goes_back_when_the_visible_cpus_change(
    steps: list[tuple[set[int], float | None, int, int, int]],
    cpu_view: bool,
    per_cpu_usage: bool,
    head_starts: list[int],
) -> None:
    """Whatever the cpuset and quota do between reads, the aggregate line and every CPU
    line (also one that disappears and comes back) only move forward, and no CPU line
    grows by more than the time that passed (host CPUs differ in elapsed time: a move
    to another CPU under the same shown number must not show their difference)."""
    host_cpus = tuple(range(6))
    elapsed, user, system = 10_000, 0, 0
    state: StatState | None = None
    last: dict[str, tuple[int, ...]] = {}
    seen_at: dict[str, int] = {}
    previous_total: tuple[int, ...] | None = None
    for cpuset, quota, grown, user_gain, system_gain in steps:
        elapsed += grown
        user, system = user + user_gain, system + system_gain
        per_cpu = {cpu: CpuTimes(user * SECOND // HZ, system * SECOND // HZ) for cpu in host_cpus}
        total = CpuTimes(6 * user * SECOND // HZ, 6 * system * SECOND // HZ)
        cpus = visible_cpus(tuple(sorted(cpuset)), host_cpus, CpuQuota(quota), cpu_view)
        lines, state = advance(
            host_stat([elapsed + head_start for head_start in head_starts]),
            CpuUsage(total, per_cpu if per_cpu_usage else None),
            cpus,
            HZ,
            quota,
            state,
        )
        assert [line.name for line in lines[1:]] == [
            f"cpu{cpus.shown_number(i)}" for i in range(cpus.count)
        ]
        for line in lines:
            before = last.get(line.name)
            if before is not None:
                assert all(a >= b for a, b in zip(line.ticks, before, strict=True)), line.name
                if line.name != "cpu":
                    passed = elapsed - seen_at[line.name]
                    assert sum(line.ticks[:8]) - sum(before[:8]) <= passed, line.name
            last[line.name] = line.ticks
            seen_at[line.name] = elapsed
        # The aggregate never falls below the CPU lines shown (a CPU shown for the first
        # time starts from zero; after a narrowing it keeps the CPUs gone, as the
        # kernel's), and never jumps: it grows by at most the time that passed on the
        # CPUs shown (a new CPU's history, or on v2 its share of the past usage, was
        # added in one read: top showed 0 % busy, sar a spike).
        summed = [sum(column) for column in zip(*(line.ticks for line in lines[1:]), strict=True)]
        assert all(a >= b for a, b in zip(lines[0].ticks, summed, strict=True))
        if previous_total is not None:
            assert sum(lines[0].ticks[:8]) - sum(previous_total[:8]) <= cpus.count * grown
        previous_total = lines[0].ticks


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
    # A composite key (usage cgroup, cpuset cgroup) goes when its usage cgroup goes (a
    # removed cpuset's key ages out under the count bound).
    store.put((tmp_path / "gone-usage", kept), 3)
    store.put((kept, kept), 4)
    assert store.get((tmp_path / "gone-usage", kept)) is None
    assert store.get((kept, kept)) == 4


def test_a_reload_adopts_states_without_pruning_and_within_the_bound(tmp_path: Path) -> None:
    """The reload takes thousands of states in one go: each put pruned every 512 (a stat
    per state each time), quadratic; now the new store takes them as they are."""
    old: StateStore[StatState] = StateStore(capacity=10)
    state = StatState((0,), (0,), ((0, 0),), (0,), ((0,) * 10,), (0,) * 10)
    for index in range(10):
        old.put((tmp_path / f"cg{index}",), state)  # none exists: a prune would drop all
    new: StateStore[StatState] = StateStore(capacity=4, prune_every=1)
    new.adopt(old, StatState)
    assert len(new) == 4
    assert new.get((tmp_path / "cg9",)) is state  # the most recently used are kept


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


def cpu_fields(content: bytes) -> dict[str, list[int]]:
    """The CPU lines of a /proc/stat as top parses them: name -> counters."""
    return {
        name: [int(value) for value in fields]
        for name, *fields in (line.split() for line in content.decode().splitlines())
        if name.startswith("cpu")
    }


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_a_cgroup_made_again_at_the_same_path_does_not_inherit_cpu_time(
    tmp_path: Path, kind: str
) -> None:
    """An LXC container removed and created again under the same name (another tenant,
    maybe) is shown its own CPU time, not what its predecessor had used."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(900, "/lxc/web", namespace="ct", nspid=(900, 1))
    host.set_cpu("/lxc/web", "0-1", None, {0: (500 * SECOND, 100 * SECOND)})
    service = host.service()
    old = cpu_fields(service.render("proc/stat", 900))
    assert old["cpu"][0] == 50_000
    # Out of the way, not removed: a filesystem may give a new directory a just-freed
    # inode (cgroupfs does not, so soon), which would make the test say nothing.
    for controller in ("cpu", "cpuset", "memory", "blkio"):
        directory = host.hierarchy_dir(controller) / "lxc/web"
        if directory.is_dir():
            directory.rename(directory.with_name("web-removed"))
    host.add_process(900, "/lxc/web", namespace="ct2", nspid=(900, 1))
    host.set_cpu("/lxc/web", "0-1", None, {0: (2 * SECOND, SECOND)})
    new = cpu_fields(service.render("proc/stat", 900))
    assert (new["cpu"][0], new["cpu"][2]) == (200, 100)
    assert new["cpu"] == [sum(f) for f in zip(new["cpu0"], new["cpu1"], strict=True)]


def write_host_stat(host: FixtureHost, elapsed: list[int]) -> None:
    """The fixture host's /proc/stat with each CPU's elapsed ticks all idle."""
    lines = [f"cpu{n} 0 0 0 {e} 0 0 0 0 0 0" for n, e in enumerate(elapsed)]
    lines.insert(0, f"cpu  0 0 0 {sum(elapsed)} 0 0 0 0 0 0")
    (host.proc / "stat").write_text("\n".join([*lines, "ctxt 1", "btime 1"]) + "\n")


def delta(now: dict[str, list[int]], then: dict[str, list[int]], name: str) -> tuple[int, int]:
    """(busy, all) ticks a line grew by: what top's %Cpu(s) divides."""
    grown = [a - b for a, b in zip(now[name], then[name], strict=True)]
    assert min(grown) >= 0, name
    return grown[0] + grown[2], sum(grown[:8])


def test_callers_in_one_cpuacct_cgroup_with_other_cpusets_keep_their_own_counters(
    tmp_path: Path,
) -> None:
    """v1: a workload pinned into a sub-cpuset of its container (cpuacct shared). Each
    read by one looked like a change of CPUs to the other, and top showed 0 % for a
    container busy on both its CPUs."""
    host = FixtureHost(tmp_path, "v1")
    host.add_process(900, "/ct", namespace="ct", nspid=(900, 1))
    host.add_process(901, "/ct", namespace="ct", nspid=(901, 2))
    cgroup_file = host.proc / "901" / "cgroup"
    cgroup_file.write_text(cgroup_file.read_text().replace(":cpuset:/ct", ":cpuset:/ct/pinned"))
    host.write("cpuset", "/ct/pinned", {"cpuset.cpus": "1"})
    service = host.service()
    last: dict[int, dict[str, list[int]]] = {}
    for second in range(4):  # the container burns both its CPUs all along
        write_host_stat(host, [1000 + 100 * second] * 4)
        busy_ns = (5 + second) * SECOND
        host.set_cpu("/ct", "0-1", None, {0: (busy_ns, 0), 1: (busy_ns, 0)})
        for pid in (900, 901):
            lines = cpu_fields(service.render("proc/stat", pid))
            if pid in last:
                cpus = len(lines) - 1
                assert delta(lines, last[pid], "cpu") == (100 * cpus, 100 * cpus)
            last[pid] = lines
    assert set(last[900]) == {"cpu", "cpu0", "cpu1"}
    assert set(last[901]) == {"cpu", "cpu1"}


def top_frames(frames: list[list[CpuLine]], name: str = "cpu") -> list[tuple[int, int]]:
    """(busy, all) ticks each of ``top``'s refreshes divides, for line ``name``."""
    result = []
    for before, after in pairwise(frames):
        then = next(line.ticks for line in before if line.name == name)
        now = next(line.ticks for line in after if line.name == name)
        grown = [a - b for a, b in zip(now, then, strict=True)]
        assert min(grown) >= 0, (name, grown)
        result.append((grown[USER] + grown[SYSTEM], sum(grown[:8])))
    return result


def test_a_move_to_another_physical_cpu_under_the_same_number_keeps_the_host_pace() -> None:
    """--enable-cfs, quota 1 CPU: cpuset 1 -> 0 shows cpu0 before and after. The host's
    cpu0 has 40 s more elapsed time than cpu1 (cpu1 was hot-added later): measured against
    cpu1's, idle jumped by 4000 ticks in one refresh, and top showed ~1 % for a container
    using half a CPU."""
    on_cpu1 = visible_cpus((1,), (0, 1), CpuQuota(1.0), cpu_view=True)
    on_cpu0 = visible_cpus((0,), (0, 1), CpuQuota(1.0), cpu_view=True)
    state: StatState | None = None
    frames = []
    for second, cpus in enumerate([on_cpu1, on_cpu1, on_cpu0, on_cpu0, on_cpu0]):
        host = host_stat([5000 + 100 * second, 1000 + 100 * second])
        lines, state = advance(host, usage(0.5 * second, 0), cpus, HZ, 1.0, state)
        assert [line.name for line in lines] == ["cpu", "cpu0"]
        frames.append(lines)
    # Every refresh, the one across the move too, shows the half CPU busy.
    assert top_frames(frames) == [(50, 100)] * 4


def test_cpus_kept_across_a_widening_show_the_interval_before_it() -> None:
    """v1 (usage per CPU), CPUs with other elapsed times (cpu2 and cpu3 hot-added later):
    the refresh across cpuset 0-1 -> 0-3 showed 0 % busy, the interval was dropped. Now
    cpu0 and cpu1 show it, and the next refreshes show 2 of 4 CPUs busy."""
    two = visible_cpus((0, 1), tuple(range(4)), CpuQuota(None), cpu_view=False)
    four = visible_cpus((0, 1, 2, 3), tuple(range(4)), CpuQuota(None), cpu_view=False)
    state: StatState | None = None
    frames = []
    for second, cpus in enumerate([two, two, four, four]):
        host = host_stat([9000 + 100 * second, 8000 + 100 * second, 700 + 100 * second, 600])
        used = CpuTimes(2 * second * SECOND, 0)  # cpu0 and cpu1 fully busy, user time
        per_cpu = {0: used, 1: used, 2: CpuTimes(0, 0), 3: CpuTimes(0, 0)}
        lines, state = advance(
            host, CpuUsage(CpuTimes(4 * second * SECOND, 0), per_cpu), cpus, HZ, None, state
        )
        frames.append(lines)
    for name in ("cpu0", "cpu1"):
        assert top_frames(frames, name) == [(100, 100)] * 3
    assert top_frames(frames[2:], "cpu2") == [(0, 100)]
    assert top_frames(frames[2:], "cpu3") == [(0, 0)]  # its host CPU is not running
    assert top_frames(frames, "cpu")[0] == (200, 200)
    assert top_frames(frames, "cpu")[1][0] == 200  # across the change: the busy shown
    assert top_frames(frames, "cpu")[2] == (200, 300)
    last = frames[-1]
    assert last[0].ticks == tuple(map(sum, zip(*(line.ticks for line in last[1:]), strict=True)))


def test_cpus_kept_across_a_narrowing_show_their_share_of_spread_usage() -> None:
    """v2 (totals only): a container busy on 4 CPUs narrowed to 2 by ``docker update``;
    the kept CPUs show their share of the interval's usage instead of 0 %."""
    four = visible_cpus((0, 1, 2, 3), tuple(range(4)), CpuQuota(None), cpu_view=False)
    two = visible_cpus((2, 3), tuple(range(4)), CpuQuota(None), cpu_view=False)
    state: StatState | None = None
    frames = []
    for second, cpus in enumerate([four, four, two, two]):
        host = host_stat(
            [5000 + 100 * second, 4000 + 100 * second, 3000 + 100 * second, 2000 + 100 * second]
        )
        busy_s = 4 * min(second, 2) + 2 * max(0, second - 2)
        lines, state = advance(host, usage(busy_s, 0), cpus, HZ, None, state)
        frames.append(lines)
    for name in ("cpu2", "cpu3"):
        assert top_frames(frames, name) == [(100, 100)] * 3
    assert top_frames(frames[2:]) == [(200, 200)]


def test_a_cpu_gone_from_the_host_file_is_left_out_until_it_is_back() -> None:
    """cpu3 is unplugged: for up to the cache TTL the online list still has it, the host
    file does not. It was charged the busiest CPU's elapsed time (idle jumped by cpu0's
    lead over it); now it is left out of that read and resumes its line once back."""
    cpus = visible_cpus((2, 3), tuple(range(4)), CpuQuota(None), cpu_view=False)
    state: StatState | None = None
    frames = []
    for second in range(4):
        elapsed = [90_000 + 100 * second, 1000, 1000 + 100 * second, 1000 + 100 * second]
        host = host_stat(elapsed)
        if second == 2:  # the host file lacks cpu3
            host = HostStat(host.total, tuple(host.cpu(n) for n in (0, 1, 2)), ("ctxt 1",))
        lines, state = advance(host, usage(0.5 * second, 0), cpus, HZ, None, state)
        frames.append(lines)
        expected = ["cpu", "cpu2"] if second == 2 else ["cpu", "cpu2", "cpu3"]
        assert [line.name for line in lines] == expected
    # No refresh shows more time than passed on the container's two CPUs (cpu3 charged
    # cpu0's 90000 ticks made top show 0 % busy); cpu2 keeps the host's pace throughout.
    assert all(elapsed <= 200 for _, elapsed in top_frames(frames))
    assert [elapsed for _, elapsed in top_frames(frames, "cpu2")] == [100] * 3
    assert top_frames([frames[1], frames[3]], "cpu3") == [(0, 0)]  # resumed where it was
