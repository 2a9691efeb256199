"""The short caches: TTL and bound of TtlCache, and the service's rendered-file cache, which
must never hand one container's file to another and never outlive its TTL."""

from __future__ import annotations

from pathlib import Path

import pytest

from procfs_view.cache import DEFAULT_TTL, TtlCache
from procfs_view.cli import _daemon_parser
from procfs_view.options import ViewOptions
from procfs_view.service import ViewService
from tests.fixtures import FixtureHost

MIB = 1024 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- TtlCache -------------------------------------------------------------------------------


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache: TtlCache[str, int] = TtlCache(0.1, clock=clock)
    cache.put("a", 1)
    clock.advance(0.099)
    assert cache.get("a") == 1
    clock.advance(0.001)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_hit_does_not_extend_the_ttl() -> None:
    clock = FakeClock()
    cache: TtlCache[str, int] = TtlCache(1.0, clock=clock)
    cache.put("a", 1)
    for _ in range(7):
        clock.advance(0.125)
        assert cache.get("a") == 1
    clock.advance(0.125)
    assert cache.get("a") is None


def test_capacity_drops_the_least_recently_used() -> None:
    cache: TtlCache[int, int] = TtlCache(10.0, capacity=3, clock=FakeClock())
    for key in range(3):
        cache.put(key, key)
    assert cache.get(0) == 0  # 0 is now the most recently used
    cache.put(3, 3)
    assert len(cache) == 3
    assert cache.get(1) is None
    assert [cache.get(k) for k in (0, 2, 3)] == [0, 2, 3]


def test_expired_entries_are_not_kept() -> None:
    """What the cache holds is what was used within the TTL: a burst of answers is let go
    as new ones come in, not when the count bound would push it out."""
    clock = FakeClock()
    cache: TtlCache[int, bytes] = TtlCache(0.1, clock=clock, size_of=len)
    for key in range(1000):
        cache.put(key, b"x" * 1000)
    assert (len(cache), cache.size) == (1000, 1_000_000)
    clock.advance(0.05)
    assert cache.get(999) == b"x" * 1000  # used again: still fresh
    clock.advance(0.06)
    cache.put(-1, b"y")
    assert len(cache) == 1
    assert cache.size == 1
    assert cache.get(999) is None


def test_bytes_held_are_bounded() -> None:
    """A big host's cpuinfo is ~330 KiB per container: a byte bound, not just a count."""
    clock = FakeClock()
    cache: TtlCache[int, bytes] = TtlCache(10.0, clock=clock, size_of=len, max_size=10_000)
    for key in range(30):
        cache.put(key, bytes(1000))
        assert cache.size <= 10_000
    assert len(cache) == 10
    assert cache.get(29) is not None
    assert cache.get(19) is None
    cache.put(100, bytes(20_000))  # bigger than the whole bound: not cached, nothing lost
    assert cache.get(100) is None
    assert len(cache) == 10
    cache.put(29, b"z")  # replacing an entry counts its new size only
    assert cache.size == 9 * 1000 + 1
    cache.clear()
    assert (len(cache), cache.size) == (0, 0)


def test_ttl_zero_stores_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(0.0, clock=FakeClock())
    assert not cache.enabled
    cache.put("a", 1)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_get_or_compute_stores_values_but_not_exceptions() -> None:
    cache: TtlCache[str, int] = TtlCache(1.0, clock=FakeClock())
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 7

    assert cache.get_or_compute("k", compute) == 7
    assert cache.get_or_compute("k", compute) == 7
    assert len(calls) == 1

    def broken() -> int:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        cache.get_or_compute("other", broken)
    assert cache.get("other") is None


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        TtlCache(-1.0)
    with pytest.raises(ValueError, match="capacity"):
        TtlCache(1.0, capacity=0)


# -- the service's cache --------------------------------------------------------------------


def mem_total(content: bytes) -> int:
    for line in content.decode().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    raise AssertionError(content)


def two_containers(tmp_path: Path, kind: str = "v2") -> FixtureHost:
    host = FixtureHost(tmp_path, kind)
    host.add_process(700, "/ct-a", namespace="a", nspid=(700, 1), start_ticks=90000)
    host.add_process(800, "/ct-b", namespace="b", nspid=(800, 1), start_ticks=95000)
    host.set_memory("/ct-a", 256 * MIB, 10 * MIB)
    host.set_memory("/ct-b", 512 * MIB, 10 * MIB)
    for path in ("/ct-a", "/ct-b"):
        host.set_cpu(path, "0", None, {0: (2 * 10**9, 10**9)})
    return host


def cached_service(
    host: FixtureHost,
    clock: FakeClock,
    ttl: float = DEFAULT_TTL,
    options: ViewOptions | None = None,
    capacity: int = 4096,
) -> ViewService:
    return ViewService(
        host.roots(), options or ViewOptions(), cache_ttl=ttl, cache_capacity=capacity, clock=clock
    )


@pytest.mark.parametrize("kind", ["v1", "v2", "hybrid"])
def test_containers_read_alternately_each_get_their_own(tmp_path: Path, kind: str) -> None:
    host = two_containers(tmp_path, kind)
    # The clock never moves: every read after the first of each container is a cache hit.
    service = cached_service(host, FakeClock(), ttl=60.0)
    for _ in range(1000):
        assert mem_total(service.answer("proc/meminfo", 700)) == 256 * 1024
        assert mem_total(service.answer("proc/meminfo", 800)) == 512 * 1024
    assert len(service.rendered) == 2


def test_cached_content_is_identical_to_a_fresh_render(tmp_path: Path) -> None:
    host = two_containers(tmp_path)
    service = cached_service(host, FakeClock())
    fresh = ViewService(host.roots(), ViewOptions())
    for path in service.served_paths():
        # stat is stateful (a second read continues from the first); the fixture host
        # has no /proc/pressure to fall back on.
        if path == "proc/stat" or path.startswith("proc/pressure/"):
            continue
        first = service.answer(path, 700)
        assert service.answer(path, 700) == first
        assert fresh.answer(path, 700) == first, path


def test_a_change_shows_once_the_ttl_has_passed(tmp_path: Path) -> None:
    host = two_containers(tmp_path)
    clock = FakeClock()
    service = cached_service(host, clock, ttl=0.25)
    assert mem_total(service.answer("proc/meminfo", 700)) == 256 * 1024
    host.set_memory("/ct-a", 128 * MIB, 10 * MIB)
    clock.advance(0.125)
    assert mem_total(service.answer("proc/meminfo", 700)) == 256 * 1024  # within the bound
    clock.advance(0.125)
    assert mem_total(service.answer("proc/meminfo", 700)) == 128 * 1024


def test_ttl_zero_shows_every_change_at_once(tmp_path: Path) -> None:
    host = two_containers(tmp_path)
    service = cached_service(host, FakeClock(), ttl=0.0)
    assert mem_total(service.answer("proc/meminfo", 700)) == 256 * 1024
    host.set_memory("/ct-a", 128 * MIB, 10 * MIB)
    assert mem_total(service.answer("proc/meminfo", 700)) == 128 * 1024
    (host.proc / "meminfo").write_text(
        (host.proc / "meminfo").read_text().replace("MemTotal:", "MemTotal:  1024 kB\nX:", 1)
    )
    assert mem_total(service.answer("proc/meminfo", 700)) == 1024
    assert len(service.rendered) == 0


def test_a_migrated_process_gets_its_new_cgroup_at_once(tmp_path: Path) -> None:
    """The caller's cgroups are read on every request, so moving it changes the key."""
    host = two_containers(tmp_path)
    service = cached_service(host, FakeClock(), ttl=60.0)
    assert mem_total(service.answer("proc/meminfo", 800)) == 512 * 1024
    assert mem_total(service.answer("proc/meminfo", 700)) == 256 * 1024
    host.add_process(700, "/ct-b", namespace="a", nspid=(700, 1), start_ticks=90000)
    assert mem_total(service.answer("proc/meminfo", 700)) == 512 * 1024


def test_uptime_is_keyed_by_pid_namespace_too(tmp_path: Path) -> None:
    """Two callers in the same cgroup but different pid namespaces (a pod sharing cgroups,
    say) have different inits, hence different uptimes."""
    host = two_containers(tmp_path)
    host.add_process(900, "/ct-a", namespace="c", nspid=(900, 1), start_ticks=50000)
    service = cached_service(host, FakeClock(), ttl=60.0)
    for _ in range(3):
        first = float(service.answer("proc/uptime", 700).split()[0])
        second = float(service.answer("proc/uptime", 900).split()[0])
        assert first == pytest.approx(1000.0 - 900.0)
        assert second == pytest.approx(1000.0 - 500.0)


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    host = FixtureHost(tmp_path, "v2")
    for index in range(20):
        host.add_process(1000 + index, f"/ct-{index}")
        host.set_memory(f"/ct-{index}", (index + 1) * MIB, 0)
    service = cached_service(host, FakeClock(), ttl=60.0, capacity=8)
    for _ in range(2):
        for index in range(20):
            content = service.answer("proc/meminfo", 1000 + index)
            assert mem_total(content) == (index + 1) * 1024
    assert len(service.rendered) == 8


def test_a_vanished_caller_is_not_cached(tmp_path: Path) -> None:
    host = two_containers(tmp_path)
    service = cached_service(host, FakeClock(), ttl=60.0)
    host_meminfo = service.host_content("proc/meminfo")
    assert service.answer("proc/meminfo", 999) == host_meminfo
    assert len(service.rendered) == 0


def test_new_options_drop_what_was_cached(tmp_path: Path) -> None:
    """SIGUSR2 replaces the options: the next read must follow them, not the cache."""
    host = two_containers(tmp_path)
    service = cached_service(host, FakeClock(), ttl=60.0)
    virtual = service.answer("proc/meminfo", 700)
    service.options = ViewOptions(virtualize=False)
    assert service.answer("proc/meminfo", 700) == service.host_content("proc/meminfo")
    service.options = ViewOptions()
    assert service.answer("proc/meminfo", 700) == virtual


def test_host_loadavg_needs_no_cgroup_read(tmp_path: Path) -> None:
    """Without -l every caller gets the host file (shared for the TTL); even a caller whose
    cgroups cannot be read does."""
    host = two_containers(tmp_path)
    clock = FakeClock()
    service = cached_service(host, clock, ttl=0.25)
    (host.proc / "700" / "cgroup").unlink()
    before = service.host_content("proc/loadavg")
    assert service.answer("proc/loadavg", 700) == before
    (host.proc / "loadavg").write_text("9.00 9.00 9.00 1/1 1\n")
    assert service.answer("proc/loadavg", 800) == before
    clock.advance(0.25)
    assert service.answer("proc/loadavg", 700) == b"9.00 9.00 9.00 1/1 1\n"


def test_host_inputs_are_shared_within_the_ttl(tmp_path: Path) -> None:
    host = two_containers(tmp_path)
    clock = FakeClock()
    service = cached_service(host, clock, ttl=0.25)
    before = service.host.meminfo()
    (host.proc / "meminfo").write_text("MemTotal: 1024 kB\n")
    assert service.host.meminfo() is before
    clock.advance(0.25)
    assert service.host.meminfo().kb("MemTotal") == 1024


def test_cpuinfo_is_kept_at_least_a_second(tmp_path: Path) -> None:
    host = two_containers(tmp_path)
    clock = FakeClock()
    service = cached_service(host, clock, ttl=0.25)
    before = service.host.cpuinfo()
    (host.proc / "cpuinfo").write_text("processor\t: 0\n")
    clock.advance(0.5)
    assert service.host.cpuinfo() == before
    clock.advance(0.5)
    assert service.host.cpuinfo() == "processor\t: 0\n"


# -- the flag -------------------------------------------------------------------------------


def test_cache_ttl_flag() -> None:
    parser = _daemon_parser()
    assert parser.parse_args([]).cache_ttl == DEFAULT_TTL == 0.1
    assert parser.parse_args(["--cache-ttl", "0"]).cache_ttl == 0.0
    assert parser.parse_args(["--cache-ttl", "0.5"]).cache_ttl == 0.5
    for bad in ("-1", "nan", "inf", "x", "61"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--cache-ttl", bad])


def test_busy_poll_and_open_files_flags() -> None:
    parser = _daemon_parser()
    defaults = parser.parse_args([])
    assert defaults.busy_poll == pytest.approx(50e-6)
    assert defaults.open_files == 8192
    assert parser.parse_args(["--busy-poll", "0"]).busy_poll == 0.0
    assert parser.parse_args(["--busy-poll", "200"]).busy_poll == pytest.approx(200e-6)
    assert parser.parse_args(["--open-files", "0"]).open_files == 0
    bad_values = {"--busy-poll": ("-1", "nan", "20000"), "--open-files": ("-1", "1.5", "x")}
    for flag, values in bad_values.items():
        for bad in values:
            with pytest.raises(SystemExit):
                parser.parse_args([flag, bad])
