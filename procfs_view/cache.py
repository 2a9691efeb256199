"""Short-lived caches that keep reads cheap while bounding how stale an answer can be.

``TtlCache`` holds values for at most ``ttl`` seconds (by an injectable monotonic clock)
and at most ``capacity`` entries (least recently used go first). A ``ttl`` of 0 disables
it: nothing is stored and every lookup misses, so every answer is computed afresh.

The service keys its cache of rendered files by the served path and the caller's cgroup
identity (the text of ``/proc/<pid>/cgroup``, read on every request), so a cached file is
only ever handed to a caller in exactly the same cgroups: never across containers.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_TTL", "Clock", "TtlCache"]

#: Seconds a rendered file or a host input may be reused: below what ``top``, ``free -s``
#: or a monitoring agent can notice (they refresh every 0.5 s or slower).
DEFAULT_TTL = 0.1
#: Distinct (path, cgroup) pairs kept; a host with 500 containers reading all 11 files fits.
DEFAULT_CAPACITY = 4096

Clock = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded LRU map whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(
        self, ttl: float, capacity: int = DEFAULT_CAPACITY, clock: Clock = time.monotonic
    ) -> None:
        if ttl < 0:
            raise ValueError(f"negative cache TTL {ttl}")
        if capacity < 1:
            raise ValueError(f"cache capacity must be positive, got {capacity}")
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value stored under ``key`` less than ``ttl`` seconds ago, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self.clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (self.clock() + self.ttl, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> V:
        """The cached value, or ``compute()`` stored for next time (exceptions propagate
        and nothing is stored)."""
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def clear(self) -> None:
        self._entries.clear()
