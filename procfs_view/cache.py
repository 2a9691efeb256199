"""Short-lived caches that keep reads cheap while bounding how stale an answer can be.

``TtlCache`` holds values for at most ``ttl`` seconds (by an injectable monotonic clock),
at most ``capacity`` entries and, when given a ``size_of``, at most ``max_size`` in all
(least recently used go first). Expired entries are dropped as new ones come in, so what
it holds is what was used within the last ``ttl`` (a burst of big answers, a 256-CPU
host's cpuinfo for hundreds of containers, is not kept until the count bound pushes it
out). A ``ttl`` of 0 disables it: nothing is stored and every lookup misses, so every
answer is computed afresh.

The service keys its cache of rendered files by the served path and the caller's cgroup
identity (the text of ``/proc/<pid>/cgroup``, read on every request), so a cached file is
only ever handed to a caller in exactly the same cgroups: never across containers.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_CAPACITY", "DEFAULT_MAX_BYTES", "DEFAULT_TTL", "Clock", "TtlCache"]

#: Seconds a rendered file or a host input may be reused: below what ``top``, ``free -s``
#: or a monitoring agent can notice (they refresh every 0.5 s or slower).
DEFAULT_TTL = 0.1
#: Distinct (path, cgroup) pairs kept; a host with 500 containers reading all 11 files fits.
DEFAULT_CAPACITY = 4096
#: Bytes of rendered files kept at most: 4096 meminfo or small-host files are ~8 MiB, and a
#: 256-CPU host's whole cpuinfo (~330 KiB) for 50 containers at once still fits.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024

Clock = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded LRU map whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(
        self,
        ttl: float,
        capacity: int = DEFAULT_CAPACITY,
        clock: Clock = time.monotonic,
        size_of: Callable[[V], int] | None = None,
        max_size: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if ttl < 0:
            raise ValueError(f"negative cache TTL {ttl}")
        if capacity < 1:
            raise ValueError(f"cache capacity must be positive, got {capacity}")
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        self.size_of = size_of
        self.max_size = max_size
        self.size = 0  # the sum of size_of over the entries (0 without size_of)
        self._entries: OrderedDict[K, tuple[float, V, int]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The value stored under ``key`` less than ``ttl`` seconds ago, else None."""
        found = self.get_aged(key)
        return None if found is None else found[0]

    def get_aged(self, key: K) -> tuple[V, float] | None:
        """``get``, and how many seconds ago the value was stored."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value, _ = entry
        now = self.clock()
        if now >= expires:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return value, now - (expires - self.ttl)

    def put(self, key: K, value: V) -> None:
        if self.ttl <= 0:
            return
        now = self.clock()
        size = 0 if self.size_of is None else self.size_of(value)
        if key in self._entries:
            self._remove(key)
        entries = self._entries
        # The least recently used first: stop at the first still fresh (everything after
        # it was used since, i.e. within the last ttl).
        while entries and next(iter(entries.values()))[0] <= now:
            self._remove(next(iter(entries)))
        if size > self.max_size:
            return  # bigger than the whole cache: never worth pushing everything out
        entries[key] = (now + self.ttl, value, size)
        self.size += size
        while len(entries) > self.capacity or self.size > self.max_size:
            self._remove(next(iter(entries)))

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
        self.size = 0

    def _remove(self, key: K) -> None:
        _, _, size = self._entries.pop(key)
        self.size -= size
