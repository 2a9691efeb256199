"""Load average sampling: the kernel's fixed-point decay, thread counting, tracking."""

from __future__ import annotations

import math
from pathlib import Path

import trio
import trio.lowlevel
import trio.testing

from procfs_view.loadavg import (
    FIRST_READ_THREADS,
    FIXED_1,
    CgroupLoad,
    FrozenCheck,
    LoadTracker,
    ThreadCount,
    calc_load,
    count_threads,
    to_display,
)


def add_thread(proc: Path, tid: int, state: str) -> None:
    (proc / str(tid)).mkdir(parents=True, exist_ok=True)
    (proc / str(tid) / "stat").write_text(f"{tid} (a) b) {state} 1 2 3\n")


def make_cgroup(root: Path, name: str, tids: list[int], threads_file: str = "tasks") -> Path:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / threads_file).write_text("".join(f"{tid}\n" for tid in tids))
    return directory


def two_runnable_threads(base: Path) -> tuple[Path, Path, LoadTracker]:
    """A cgroup of two runnable threads and a tracker on trio's clock, counting in the
    trio thread (deterministic under MockClock)."""
    proc = base / "proc"
    for tid in (10, 11):
        add_thread(proc, tid, "R")
    cgroup = make_cgroup(base / "cg", "ct", [10, 11])
    return proc, cgroup, LoadTracker(proc, clock=trio.current_time, in_worker_thread=False)


def test_constant_load_converges_like_the_kernel() -> None:
    state = CgroupLoad(0.0)
    for _ in range(12 * 5):  # five minutes of 5 s rounds with 2 runnable threads
        state.fold(ThreadCount(running=2, total=10, last_pid=99))
    sample = state.sample()
    assert math.isclose(sample.avg1, 2 * (1 - math.exp(-5)), abs_tol=0.02)
    assert math.isclose(sample.avg5, 2 * (1 - math.exp(-1)), abs_tol=0.02)
    assert math.isclose(sample.avg15, 2 * (1 - math.exp(-1 / 3)), abs_tol=0.02)
    assert (sample.running, sample.total, sample.last_pid) == (2, 10, 99)


def test_decay_reaches_zero_when_idle() -> None:
    state = CgroupLoad(0.0, loads=[4 * FIXED_1] * 3)
    for _ in range(12 * 60):
        state.fold(ThreadCount())
    assert state.sample().avg1 == 0.0


def test_fixed_point_matches_kernel_formula() -> None:
    assert calc_load(0, 1884, FIXED_1) == (FIXED_1 * (FIXED_1 - 1884) + FIXED_1 - 1) // FIXED_1
    assert to_display(FIXED_1) == 1.0
    assert to_display(FIXED_1 // 2) == 0.5


def test_counts_running_and_uninterruptible_threads_in_subtree(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for tid, state in [(10, "R"), (11, "S"), (12, "D"), (20, "R"), (21, "Z")]:
        add_thread(proc, tid, state)
    top = make_cgroup(tmp_path / "cg", "ct", [10, 11, 12])
    make_cgroup(top, "child", [20, 21, 99], threads_file="cgroup.threads")  # 99 exited
    assert count_threads(top, proc) == ThreadCount(running=3, total=5, last_pid=21)
    assert count_threads(tmp_path / "cg" / "gone", proc) is None


def test_a_threads_own_state_counts_not_its_process_stat(tmp_path: Path) -> None:
    """Where the kernel has it, the thread's task file is read: /proc/<tid>/stat of a
    thread is its whole process's (and costs threads squared over a process)."""
    proc = tmp_path / "proc"
    add_thread(proc, 30, "S")  # the process line says sleeping
    task = proc / "30" / "task" / "30"
    task.mkdir(parents=True)
    (task / "stat").write_text("30 (a) R 1 2 3\n")  # this thread runs
    top = make_cgroup(tmp_path / "cg", "ct", [30])
    assert count_threads(top, proc) == ThreadCount(running=1, total=1, last_pid=30)


def test_a_frozen_cgroups_threads_are_no_load(tmp_path: Path) -> None:
    """docker pause / lxc freeze: the kernel shows frozen tasks in D, and its own load
    average leaves them out. v2 says frozen in cgroup.events, v1 in the freezer
    hierarchy's freezer.state of the same path."""
    proc = tmp_path / "proc"
    for tid, state in [(10, "R"), (11, "D"), (20, "R")]:
        add_thread(proc, tid, state)
    # v2: the paused container and, below it, a cgroup frozen with it.
    v2 = make_cgroup(tmp_path / "v2", "ct", [10, 11])
    (v2 / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    make_cgroup(v2, "child", [20])
    (v2 / "child" / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    assert count_threads(v2, proc, FrozenCheck()) == ThreadCount(running=0, total=3, last_pid=20)
    (v2 / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert count_threads(v2, proc, FrozenCheck()) == ThreadCount(running=2, total=3, last_pid=20)
    # v1: the cpu hierarchy is walked, the freezer hierarchy tells.
    cpu = make_cgroup(tmp_path / "cpu", "ct", [10, 11])
    freezer = tmp_path / "freezer" / "ct"
    freezer.mkdir(parents=True)
    check = FrozenCheck(tmp_path / "cpu", tmp_path / "freezer")
    for state, running in [("FROZEN", 0), ("FREEZING", 0), ("THAWED", 2)]:
        (freezer / "freezer.state").write_text(f"{state}\n")
        assert count_threads(cpu, proc, check) == ThreadCount(running, total=2, last_pid=11)
    (freezer / "freezer.state").unlink()  # no freezer cgroup there: not frozen
    assert count_threads(cpu, proc, check) == ThreadCount(running=2, total=2, last_pid=11)


def test_first_read_shows_zero_averages_and_current_counts(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    add_thread(proc, 10, "R")
    cgroup = make_cgroup(tmp_path / "cg", "ct", [10])
    sample = LoadTracker(proc).sample(cgroup)
    assert sample is not None
    assert (sample.avg1, sample.running, sample.total) == (0.0, 1, 1)


def test_unread_cgroups_expire_and_vanished_ones_are_dropped(tmp_path: Path) -> None:
    now = [0.0]
    proc = tmp_path / "proc"
    add_thread(proc, 10, "R")
    read = make_cgroup(tmp_path / "cg", "read", [10])
    vanishing = make_cgroup(tmp_path / "cg", "vanishing", [10])
    tracker = LoadTracker(proc, keep_for=600, clock=lambda: now[0])
    tracker.sample(read)
    tracker.sample(vanishing)
    (vanishing / "tasks").unlink()
    vanishing.rmdir()
    tracker.fold(tracker.count_all(tracker.tracked()))
    assert list(tracker.cgroups) == [read]
    now[0] = 601.0
    assert tracker.tracked() == []


def test_sampler_task_folds_every_interval(tmp_path: Path) -> None:
    async def scenario(base: Path) -> tuple[float, float]:
        proc, cgroup, tracker = two_runnable_threads(base)
        tracker.sample(cgroup)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.run)
            await trio.sleep(60.5)  # 12 rounds
            busy = tracker.cgroups[cgroup].sample().avg1
            for tid in (10, 11):
                add_thread(proc, tid, "S")
            await trio.sleep(300)
            tracker.sample(cgroup)
            idle = tracker.cgroups[cgroup].sample().avg1
            nursery.cancel_scope.cancel()
        return busy, idle

    busy, idle = trio.run(scenario, tmp_path, clock=trio.testing.MockClock(autojump_threshold=0))
    assert math.isclose(busy, 2 * (1 - math.exp(-1)), abs_tol=0.03)
    assert idle < 0.02


def test_a_big_cgroups_first_read_lists_its_threads_and_counts_them_next_round(
    tmp_path: Path,
) -> None:
    """Counting is a stat file per thread, in the FUSE thread on a first read: past
    FIRST_READ_THREADS the first read shows the total only, the next round the rest."""
    proc = tmp_path / "proc"
    tids = list(range(100, 101 + FIRST_READ_THREADS))
    for tid in tids:
        add_thread(proc, tid, "R")
    big = make_cgroup(tmp_path / "cg", "big", tids)
    tracker = LoadTracker(proc)
    first = tracker.sample(big)
    assert first is not None
    assert (first.running, first.total, first.last_pid) == (0, len(tids), tids[-1])
    tracker.fold(tracker.count_all(tracker.tracked()))
    after = tracker.sample(big)
    assert after is not None
    assert (after.running, after.total) == (len(tids), len(tids))


def test_rounds_that_overrun_the_period_follow_the_time_that_passed(tmp_path: Path) -> None:
    """A round of 12 s (tens of thousands of threads) used to be folded as one 5 s step
    and the next started at once: the averages rose at half the kernel's pace. Now the
    missed periods are folded with the round's count and the next round waits."""

    async def scenario(base: Path) -> tuple[float, int]:
        _, cgroup, tracker = two_runnable_threads(base)
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, trio.testing.MockClock)
        rounds = []
        counting = tracker.count_all

        def slow_round(cgroups: list[Path]) -> dict[Path, ThreadCount | None]:
            rounds.append(trio.current_time())
            clock.jump(12.0)
            return counting(cgroups)

        tracker.count_all = slow_round  # type: ignore[method-assign]
        tracker.sample(cgroup)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracker.run)
            await trio.sleep(60.5)
            avg1 = tracker.cgroups[cgroup].sample().avg1
            nursery.cancel_scope.cancel()
        return avg1, len(rounds)

    avg1, rounds = trio.run(scenario, tmp_path, clock=trio.testing.MockClock(autojump_threshold=0))
    assert rounds <= 5  # one per 15 s, not back to back
    # Every 5 s period up to the last finished round counted: 2 threads for ~60 s.
    assert math.isclose(avg1, 2 * (1 - math.exp(-60 / 60)), abs_tol=0.15)
