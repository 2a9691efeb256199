"""Per-container load average: a trio task samples runnable threads of the cgroups being read.

Every ``interval`` (5.01 s, as the kernel's LOAD_FREQ of 5 s and a tick) it counts, for each
cgroup read in the last ``keep_for`` seconds, the threads in state R (running/runnable) or D
(uninterruptible) in that cgroup and its descendants, and folds the count into 1/5/15-minute
averages with the kernel's fixed-point arithmetic (kernel/sched/loadavg.c: FSHIFT 11, EXP_1
1884, EXP_5 2014, EXP_15 2037), so a container's numbers decay exactly like the host's.

Cost stays flat per container: a round reads each tracked cgroup's thread list once
(``tasks`` on v1, ``cgroup.threads`` on v2: every thread, no per-process task listing)
and one ``/proc/<tid>/stat`` per thread, in a worker thread so FUSE requests are not held
up. Cgroups nobody reads are never sampled (LXCFS walks every cgroup it ever saw, which
stalls hosts with hundreds of containers: lxcfs#407, #504).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from procfs_view.cgroup import CgroupLayout
from procfs_view.logsetup import RateLimiter
from procfs_view.views.loadavg import LoadSample

log = logging.getLogger(__name__)

FSHIFT = 11
FIXED_1 = 1 << FSHIFT
EXP_1 = 1884  # FIXED_1 / exp(5 s / 1 min)
EXP_5 = 2014  # FIXED_1 / exp(5 s / 5 min)
EXP_15 = 2037  # FIXED_1 / exp(5 s / 15 min)
#: The kernel samples every 5 s and one tick (5*HZ+1), not exactly 5 s, so that work
#: done every 1 or 5 s is not always caught (or always missed) by the sample: a
#: container whose cron job runs one second in five would otherwise show a load of 0 or
#: 1 forever. 10 ms a round slides the sample over a whole second in under 9 minutes.
LOAD_FREQ = 5.01
#: Stop sampling a cgroup nobody has read for this long (seconds).
KEEP_FOR = 600.0
#: Threads a cgroup's first read counts itself, in the FUSE thread (a stat file each,
#: ~45 us): a first read of a cgroup of 8000 held every container's reads for 0.36 s.
#: A bigger one shows its thread total at once and its running count from the next round.
FIRST_READ_THREADS = 256


def calc_load(load: int, exp: int, active: int) -> int:
    """One step of the kernel's exponential decay (``calc_load`` in kernel/sched/loadavg.c);
    ``active`` is the thread count in fixed point."""
    new_load = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        new_load += FIXED_1 - 1
    return new_load // FIXED_1


def to_display(load: int) -> float:
    """The value /proc/loadavg prints: the kernel adds FIXED_1/200 to round to 2 places."""
    rounded = load + FIXED_1 // 200
    return (rounded >> FSHIFT) + ((rounded & (FIXED_1 - 1)) * 100 >> FSHIFT) / 100


@dataclass(frozen=True)
class ThreadCount:
    """Threads of one cgroup subtree at one instant."""

    running: int = 0
    total: int = 0
    last_pid: int = 0


@dataclass
class CgroupLoad:
    """Fixed-point averages of one cgroup, and when it was last read."""

    last_read: float
    loads: list[int] = field(default_factory=lambda: [0, 0, 0])
    latest: ThreadCount = field(default_factory=ThreadCount)

    def fold(self, count: ThreadCount, steps: int = 1) -> None:
        """``steps`` sampling periods with this count (more than one after a round that
        overran: the kernel, too, folds the periods it missed with one count)."""
        active = count.running * FIXED_1
        for _ in range(steps):
            self.loads = [
                calc_load(load, exp, active)
                for load, exp in zip(self.loads, (EXP_1, EXP_5, EXP_15), strict=True)
            ]
        self.latest = count

    def sample(self) -> LoadSample:
        one, five, fifteen = (to_display(load) for load in self.loads)
        latest = self.latest
        return LoadSample(one, five, fifteen, latest.running, latest.total, latest.last_pid)


def _thread_state(proc_root: Path, tid: int) -> str | None:
    """State letter from /proc/<tid>/task/<tid>/stat (the field after the ``)`` closing
    the name). That file, not /proc/<tid>/stat: for a thread id the kernel builds the
    latter for the whole process, summing over its threads, so reading it for every
    thread cost threads squared (8000 threads: 3.9 s a round, against 0.36 s).
    /proc/<tid>/stat is the fallback for trees without task directories (fixtures)."""
    base = proc_root / str(tid)
    try:
        try:
            with open(base / "task" / str(tid) / "stat", "rb") as handle:
                data = handle.read(512)
        except FileNotFoundError:
            with open(base / "stat", "rb") as handle:
                data = handle.read(512)
    except OSError:
        return None  # exited between listing and reading
    close = data.rfind(b")")
    if close < 0 or close + 2 >= len(data):
        return None
    return chr(data[close + 2])


def _thread_ids(directory: str) -> list[int]:
    """Every thread directly in a cgroup: v2 ``cgroup.threads``, v1 ``tasks``."""
    for name in ("cgroup.threads", "tasks"):
        try:
            with open(os.path.join(directory, name), "rb") as handle:
                return [int(tid) for tid in handle.read().split()]
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return []
    return []


def _first_line_with(path: str, prefix: bytes) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            for line in handle.read().splitlines():
                if line.startswith(prefix):
                    return line
    except OSError:
        return None
    return None


class FrozenCheck:
    """Whether a cgroup is frozen (``docker pause``, ``lxc freeze``, a checkpoint): the
    kernel reports frozen tasks in state D, but its own load average leaves them out, so
    ours must too, or a paused container with 50 threads climbs to a load of 50. v2 says
    so in the cgroup's ``cgroup.events`` (``frozen 1``, also when an ancestor froze it);
    v1 in ``freezer.state`` of the same path in the freezer hierarchy (FROZEN, or
    FREEZING while its tasks stop)."""

    def __init__(self, walked_root: Path | None = None, freezer_root: Path | None = None) -> None:
        self.walked_root = walked_root  # the v1 hierarchy the sampler walks (cpu)
        self.freezer_root = freezer_root  # the v1 freezer hierarchy, if any

    def __call__(self, directory: str) -> bool:
        events = _first_line_with(os.path.join(directory, "cgroup.events"), b"frozen ")
        if events is not None:
            return events.strip() == b"frozen 1"
        if self.walked_root is None or self.freezer_root is None:
            return False
        relative = os.path.relpath(directory, self.walked_root)
        if relative.startswith(".."):
            return False
        state = _first_line_with(os.path.join(self.freezer_root, relative, "freezer.state"), b"FR")
        return state is not None and state.strip() in (b"FROZEN", b"FREEZING")


def frozen_check(layout: CgroupLayout) -> FrozenCheck:
    """The FrozenCheck of this host: v1's freezer hierarchy beside the cpu one the sampler
    walks (a v2 cgroup says it in its own directory)."""
    walked = layout.hierarchy_for("cpu")
    freezer = layout.hierarchy_for("freezer")
    return FrozenCheck(
        walked.mount_point if walked is not None and walked.version == 1 else None,
        freezer.mount_point if freezer is not None and freezer.version == 1 else None,
    )


def count_threads(
    cgroup: Path,
    proc_root: Path = Path("/proc"),
    frozen: Callable[[str], bool] | None = None,
    most: int | None = None,
) -> ThreadCount | None:
    """Count R/D threads in ``cgroup`` and below, but none of a frozen cgroup's (``frozen``
    tells); None if the cgroup is gone. Past ``most`` threads none is looked at: the
    count has the listed total and largest tid, and no running ones."""
    if not cgroup.is_dir():
        return None
    listed = [(directory, _thread_ids(directory)) for directory, _, _ in os.walk(cgroup)]
    if most is not None and sum(len(tids) for _, tids in listed) > most:
        every = [tid for _, tids in listed for tid in tids]
        return ThreadCount(0, len(every), max(every))
    running = total = last_pid = 0
    for directory, tids in listed:
        counts = frozen is None or not frozen(directory)
        for tid in tids:
            state = _thread_state(proc_root, tid)
            if state is None:
                continue
            total += 1
            last_pid = max(last_pid, tid)
            if counts and state in ("R", "D"):
                running += 1
    return ThreadCount(running, total, last_pid)


class LoadTracker:
    """Tracks the cgroups being read and keeps their load averages (the service's
    ``LoadSource``). ``sample`` and ``fold`` run in the trio thread; only the counting
    runs in a worker thread, so no lock is needed."""

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        interval: float = LOAD_FREQ,
        keep_for: float = KEEP_FOR,
        clock: Callable[[], float] = time.monotonic,
        in_worker_thread: bool = True,
    ) -> None:
        self.proc_root = proc_root
        self.interval = interval
        self.keep_for = keep_for
        self.clock = clock
        self.in_worker_thread = in_worker_thread
        self.cgroups: dict[Path, CgroupLoad] = {}
        self.last_round_seconds = 0.0
        #: Set by the daemon from the cgroup layout (FrozenCheck); None counts every R/D.
        self.frozen: Callable[[str], bool] | None = None
        # A slow round is a tenant's doing (threads by the thousand) and lasts while its
        # cgroup is read: said once every 10 minutes, with how many were not said.
        self._slow_rounds = RateLimiter(interval=600.0)

    def sample(self, cgroup: Path) -> LoadSample | None:
        """The averages of ``cgroup``, which becomes tracked. The first read shows zero
        averages (as the kernel's are at boot) with the current thread counts (of a
        cgroup of more than FIRST_READ_THREADS, the total only, as LXCFS shows zeros)."""
        state = self.cgroups.get(cgroup)
        if state is None:
            count = count_threads(cgroup, self.proc_root, self.frozen, FIRST_READ_THREADS)
            if count is None:
                return None
            state = self.cgroups[cgroup] = CgroupLoad(self.clock(), latest=count)
            log.debug("loadavg: sampling %s from now on", cgroup)
        state.last_read = self.clock()
        return state.sample()

    def tracked(self) -> list[Path]:
        """Cgroups to sample this round; those not read for ``keep_for`` are dropped."""
        now = self.clock()
        for cgroup in [c for c, s in self.cgroups.items() if now - s.last_read > self.keep_for]:
            del self.cgroups[cgroup]
        return list(self.cgroups)

    def count_all(self, cgroups: list[Path]) -> dict[Path, ThreadCount | None]:
        """One sampling pass (blocking I/O; run in a worker thread)."""
        started = time.perf_counter()
        counts = {cgroup: count_threads(cgroup, self.proc_root, self.frozen) for cgroup in cgroups}
        self.last_round_seconds = time.perf_counter() - started
        return counts

    def fold(self, counts: dict[Path, ThreadCount | None], steps: int = 1) -> None:
        """Apply one round (as ``steps`` periods); cgroups that disappeared are dropped
        silently."""
        for cgroup, count in counts.items():
            state = self.cgroups.get(cgroup)
            if state is None:
                continue
            if count is None:
                del self.cgroups[cgroup]
            else:
                state.fold(count, steps)

    async def run(self) -> None:
        """Sample every ``interval`` until cancelled. With nothing tracked a round costs one
        timer wake-up."""
        next_round = trio.current_time() + self.interval
        while True:
            await trio.sleep_until(next_round)
            next_round += self.interval
            cgroups = self.tracked()
            if not cgroups:
                continue
            try:
                if self.in_worker_thread:
                    # Abandoned on cancel: a stop must not wait for a long round (reads
                    # hang while it does); the thread touches nothing the fold reads.
                    counts = await trio.to_thread.run_sync(
                        self.count_all, cgroups, abandon_on_cancel=True
                    )
                else:  # deterministic under trio's MockClock (tests)
                    counts = self.count_all(cgroups)
            except Exception:  # never let sampling take the daemon down
                log.exception("loadavg: sampling round failed; trying again next round")
                continue
            # A round that overran the period: the averages follow the time that passed
            # (one step per period), and the next round waits for the next period
            # instead of starting at once, back to back with this one.
            steps = 1
            late = trio.current_time() - next_round
            if late > 0:
                missed = math.ceil(late / self.interval)
                next_round += missed * self.interval
                steps += missed
            self.fold(counts, steps)
            if self.last_round_seconds > self.interval / 10:
                suppressed = self._slow_rounds.allow("slow round")
                if suppressed is not None:
                    log.warning(
                        "loadavg: a round over %d cgroups took %.3f s (over 10%% of %.0f s; "
                        "%d more such rounds since last said)",
                        len(cgroups),
                        self.last_round_seconds,
                        self.interval,
                        suppressed,
                    )
