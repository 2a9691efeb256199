"""The lean trio namespace pyfuse3's request loop runs on (procfs_view.fuseloop)."""

from __future__ import annotations

import os
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
        with trio.CancelScope() as scope:
            scope.cancel()
            for _ in range(fuseloop.FAST_PATH_LIMIT):
                await fuseloop.wait_readable(read_end)  # no checkpoint: not cancelled
            # Then one real checkpoint lets other tasks (signals) run, and cancels.
            await fuseloop.wait_readable(read_end)
        assert scope.cancelled_caught

    fuseloop._readiness.streak = 0
    trio.run(main)


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
