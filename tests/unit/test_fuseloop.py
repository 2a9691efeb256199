"""The lean trio namespace pyfuse3's request loop runs on (procfs_view.fuseloop)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pyfuse3
import pytest
import trio

from procfs_view import fuseloop


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


def test_an_unheld_lock_is_taken_without_a_checkpoint() -> None:
    async def main() -> None:
        lock = fuseloop.FastLock()
        fuseloop._readiness.reset(0.0)
        with trio.CancelScope() as scope:
            scope.cancel()
            async with lock:  # trio.Lock would raise Cancelled here
                pass
        assert not scope.cancelled_caught

    trio.run(main)


def test_the_lock_excludes() -> None:
    async def main() -> None:
        lock = fuseloop.FastLock()
        inside = 0
        most = 0

        async def worker() -> None:
            nonlocal inside, most
            for _ in range(20):
                async with lock:
                    inside += 1
                    most = max(most, inside)
                    await trio.lowlevel.checkpoint()
                    inside -= 1

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(worker)
        assert most == 1

    trio.run(main)


def test_a_queued_request_skips_the_scheduler_a_bounded_number_of_times(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    os.write(write_end, b"x")

    async def main() -> None:
        lock = fuseloop.FastLock()
        with trio.CancelScope() as scope:
            scope.cancel()
            for _ in range(fuseloop.FAST_PATH_LIMIT):
                async with lock:  # as pyfuse3 waits: no checkpoint, so not cancelled
                    await fuseloop.wait_readable(read_end)
            # Then one real checkpoint lets other tasks (signals) run, and cancels.
            async with lock:
                await fuseloop.wait_readable(read_end)
        assert scope.cancelled_caught

    fuseloop._readiness.streak = 0
    trio.run(main)


def test_a_stop_handled_at_the_bounded_yield_ends_the_loop_with_nothing_queued(
    pipe: tuple[int, int],
) -> None:
    """pyfuse3's loop checks its exit flag under the lock, then waits for the fd. A SIGTERM
    handled at the yield every FAST_PATH_LIMIT requests (where a burst of reads lets the
    signal task run) must be seen by that check: with the last request served and none
    queued, a later check would come only after the next container's read."""
    read_end, write_end = pipe
    os.write(write_end, b"x")
    exited = False

    async def terminate() -> None:  # like pyfuse3.terminate() from the signal task
        nonlocal exited
        exited = True
        trio.lowlevel.notify_closing(read_end)

    async def session_loop(lock: fuseloop.FastLock) -> int:  # pyfuse3's, in short
        served = 0
        while True:
            try:
                async with lock:
                    if exited:
                        return served
                    await fuseloop.wait_readable(read_end)
            except trio.ClosedResourceError:
                return served
            served += 1
            if served == fuseloop.FAST_PATH_LIMIT:
                os.read(read_end, 1)  # the burst is over: nothing more is queued

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(terminate)  # runs at the loop's first checkpoint
            with trio.fail_after(5):
                return await session_loop(fuseloop.FastLock())
        raise AssertionError("unreachable")

    fuseloop._readiness.reset(0.0)
    assert trio.run(main) == fuseloop.FAST_PATH_LIMIT


def test_an_idle_fd_parks_until_readable(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe

    async def main() -> None:
        async def later() -> None:
            await trio.sleep(0.01)
            os.write(write_end, b"x")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            with trio.fail_after(10):
                await fuseloop.wait_readable(read_end)
        assert os.read(read_end, 1) == b"x"

    trio.run(main)


def test_installed_swaps_pyfuse3s_trio_and_restores_it() -> None:
    module: Any = pyfuse3
    assert module.trio is trio
    with fuseloop.installed():
        assert module.trio is not trio
        assert module.trio.Lock is fuseloop.FastLock
        assert module.trio.lowlevel.wait_readable is fuseloop.wait_readable
        assert module.trio.ClosedResourceError is trio.ClosedResourceError
    assert module.trio is trio


@pytest.fixture
def readiness() -> Iterator[Any]:
    """The loop's bookkeeping, reset around each test."""
    fuseloop._readiness.reset(fuseloop.DEFAULT_BUSY_POLL)
    yield fuseloop._readiness
    fuseloop._readiness.reset(0.0)


def test_a_request_arriving_within_the_busy_poll_window_skips_the_scheduler(
    pipe: tuple[int, int], readiness: Any
) -> None:
    read_end, write_end = pipe
    readiness.busy_poll = 5.0  # generous: the writer thread below may be slow to start

    async def main() -> None:
        writer = threading.Timer(0.01, os.write, (write_end, b"x"))
        writer.start()
        with trio.CancelScope() as scope:
            scope.cancel()
            await fuseloop.wait_readable(read_end)  # parked in trio, it would be cancelled
        writer.join()
        assert not scope.cancelled_caught

    trio.run(main)


def test_without_busy_poll_an_idle_fd_parks_at_once(pipe: tuple[int, int], readiness: Any) -> None:
    read_end, _ = pipe
    readiness.busy_poll = 0.0

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await fuseloop.wait_readable(read_end)
        assert scope.cancelled_caught

    trio.run(main)


def test_spins_after_a_release_back_off_while_they_time_out(
    pipe: tuple[int, int], readiness: Any
) -> None:
    """A reader that reads one file now and then: after its release nothing follows, so
    the spin is tried once, then skipped for 1, 2, 4, ... 64 releases; one that pays off
    brings it back at once."""
    read_end, write_end = pipe
    readiness.busy_poll = 0.001
    spun = []
    for _ in range(200):
        started = time.perf_counter()
        assert not readiness.spin(read_end, after_release=True)
        spun.append(time.perf_counter() - started >= 0.001)
    tried = [index for index, did in enumerate(spun) if did]
    gaps = [later - earlier - 1 for earlier, later in itertools.pairwise(tried)]
    assert gaps[:7] == [1, 2, 4, 8, 16, 32, 64]
    # Within a burst (no release just before) the spin is always tried.
    started = time.perf_counter()
    assert not readiness.spin(read_end)
    assert time.perf_counter() - started >= 0.001
    # A spin after a release that finds a request resets the back-off.
    os.write(write_end, b"x")
    readiness.skip = 0
    assert readiness.spin(read_end, after_release=True)
    assert (readiness.backoff, readiness.skip) == (0, 0)


def test_a_request_right_after_a_release_resets_the_back_off(
    pipe: tuple[int, int], readiness: Any
) -> None:
    read_end, write_end = pipe
    readiness.backoff = readiness.skip = 64
    os.write(write_end, b"x")
    fuseloop.burst_ended()

    async def main() -> None:
        await fuseloop.wait_readable(read_end)

    trio.run(main)
    assert (readiness.backoff, readiness.skip, readiness.after_release) == (0, 0, False)


def test_a_negative_busy_poll_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"), fuseloop.installed(-1.0):
        pass
