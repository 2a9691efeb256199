"""meminfo for a container: the numbers `free` and psutil derive from it, v1 and v2."""

from __future__ import annotations

from pathlib import Path

import pytest

from procfs_view.cgroup.records import MemoryRecord, MemoryStat, SwapRecord
from procfs_view.host import HostReader, parse_meminfo
from procfs_view.options import ViewOptions
from procfs_view.views import meminfo
from tests.fixtures import DATA, FixtureHost

MIB = 1024 * 1024
KINDS = ["v1", "v2", "hybrid"]
HOST = parse_meminfo((DATA / "meminfo.x86_64").read_text())


def values(content: bytes) -> dict[str, int]:
    """Parse like procps' meminfo reader: key before ':', first number after it."""
    parsed = {}
    for line in content.decode().splitlines():
        key, _, rest = line.partition(":")
        parsed[key] = int(rest.split()[0])
    return parsed


def container(tmp_path: Path, kind: str) -> FixtureHost:
    host = FixtureHost(tmp_path, kind)
    host.add_process(500, "/pod/ct", namespace="ct", nspid=(500, 1))
    return host


@pytest.mark.parametrize("kind", KINDS)
def test_limit_usage_and_free(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    host.set_memory("/pod/ct", 512 * MIB, 200 * MIB, {"file": 50 * MIB, "active_file": 50 * MIB})
    shown = values(host.service().render("proc/meminfo", 500))
    assert shown["MemTotal"] == 512 * 1024
    assert shown["MemFree"] == 312 * 1024
    assert shown["MemAvailable"] == 362 * 1024
    assert shown["Cached"] == 50 * 1024
    assert shown["Buffers"] == 0
    # free's "used" = total - free - buffers - cache
    assert shown["MemTotal"] - shown["MemFree"] - shown["Cached"] == 150 * 1024


@pytest.mark.parametrize("kind", KINDS)
def test_ancestor_limit_binds(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    host.set_memory("/pod", 128 * MIB, 0)
    host.set_memory("/pod/ct", 512 * MIB, 10 * MIB)
    assert values(host.service().render("proc/meminfo", 500))["MemTotal"] == 128 * 1024


@pytest.mark.parametrize("kind", KINDS)
def test_unlimited_cgroup_has_host_total(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    host.set_memory("/pod/ct", None, 10 * MIB)
    shown = values(host.service().render("proc/meminfo", 500))
    assert shown["MemTotal"] == HOST.kb("MemTotal")
    assert shown["MemFree"] == HOST.kb("MemTotal") - 10 * 1024


@pytest.mark.parametrize("kind", KINDS)
def test_usage_above_limit_never_wraps(tmp_path: Path, kind: str) -> None:
    """LXCFS printed MemFree ~ 2^64 kB here (lxcfs#115, #695)."""
    host = container(tmp_path, kind)
    host.set_memory("/pod/ct", 64 * MIB, 80 * MIB, swap_limit=16 * MIB, swap_usage=32 * MIB)
    shown = values(host.service().render("proc/meminfo", 500))
    assert shown["MemFree"] == 0
    assert shown["MemAvailable"] == 0
    assert 0 <= shown["SwapFree"] <= shown["SwapTotal"]
    assert all(0 <= value < 2**63 for value in shown.values())


@pytest.mark.parametrize("kind", KINDS)
def test_huge_pages_and_mapped_are_reported(tmp_path: Path, kind: str) -> None:
    """LXCFS shows AnonHugePages 0 (prefix match on total_rss) and Mapped 0 on v2."""
    host = container(tmp_path, kind)
    host.set_memory(
        "/pod/ct",
        512 * MIB,
        100 * MIB,
        {"anon": 60 * MIB, "anon_thp": 8 * MIB, "file_mapped": 3 * MIB},
    )
    shown = values(host.service().render("proc/meminfo", 500))
    assert shown["AnonHugePages"] == 8 * 1024
    assert shown["Mapped"] == 3 * 1024
    assert shown["AnonPages"] == 60 * 1024


@pytest.mark.parametrize("kind", KINDS)
def test_every_memory_line_fits_in_memtotal(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    host.set_memory("/pod/ct", 16 * MIB, 1 * MIB)
    shown = values(host.service().render("proc/meminfo", 500))
    for key, value in shown.items():
        if key.startswith(("Swap", "HugePages_", "Hugepagesize")):
            continue
        assert value <= shown["MemTotal"], key


@pytest.mark.parametrize("kind", KINDS)
def test_swap_limit_and_disable_swap(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    host.set_memory("/pod/ct", 256 * MIB, 10 * MIB, swap_limit=64 * MIB, swap_usage=4 * MIB)
    shown = values(host.service().render("proc/meminfo", 500))
    assert (shown["SwapTotal"], shown["SwapFree"]) == (64 * 1024, 60 * 1024)
    swaps = host.service().render("proc/swaps", 500).decode().splitlines()
    assert swaps[1].split() == ["none", "virtual", "65536", "4096", "0"]
    off = host.service(ViewOptions(swap=False))
    shown = values(off.render("proc/meminfo", 500))
    assert (shown["SwapTotal"], shown["SwapFree"]) == (0, 0)
    assert len(off.render("proc/swaps", 500).decode().splitlines()) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_swap_capped_by_host_swap(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    host.set_memory("/pod/ct", 256 * MIB, 10 * MIB, swap_limit=None, swap_usage=0)
    shown = values(host.service().render("proc/meminfo", 500))
    assert shown["SwapTotal"] == HOST.kb("SwapTotal")


@pytest.mark.parametrize("kind", KINDS)
def test_host_without_swap_needs_no_swap_files(tmp_path: Path, kind: str) -> None:
    """Most Kubernetes nodes run without swap: the container then has none either, and its
    swap files are not read, so not even garbage in them costs it its view."""
    host = container(tmp_path, kind)
    text = (host.proc / "meminfo").read_text()
    for line in ("SwapTotal:       8388604 kB", "SwapFree:        8000000 kB"):
        text = text.replace(line, f"{line.split()[0]:<16}{0:>8} kB")
    (host.proc / "meminfo").write_text(text)
    host.set_memory("/pod/ct", 256 * MIB, 10 * MIB, swap_limit=64 * MIB, swap_usage=4 * MIB)
    swap_file = "memory.swap.current" if kind == "v2" else "memory.memsw.usage_in_bytes"
    host.write("memory", "/pod/ct", {swap_file: "garbage"})
    shown = values(host.service().render("proc/meminfo", 500))
    assert shown["MemTotal"] == 256 * 1024
    assert (shown["SwapTotal"], shown["SwapFree"]) == (0, 0)
    assert len(host.service().render("proc/swaps", 500).decode().splitlines()) == 1


def test_host_meminfo_is_read_once_per_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--cache-ttl 0`` (nothing shared between reads) the swap check and the view
    share one read of the host's meminfo."""
    host = container(tmp_path, "v1")
    host.set_memory("/pod/ct", 256 * MIB, 10 * MIB, swap_limit=64 * MIB, swap_usage=4 * MIB)
    service = host.service()
    reads = []
    original = HostReader.meminfo
    monkeypatch.setattr(HostReader, "meminfo", lambda self: reads.append(1) or original(self))
    for path in ("proc/meminfo", "proc/swaps"):
        service.answer(path, 500)
    assert len(reads) == 2


def test_swappiness_zero_means_no_more_swap() -> None:
    record = MemoryRecord(256 * MIB, 10 * MIB, MemoryStat(), SwapRecord(64 * MIB, 2 * MIB, 0))
    assert meminfo.swap_figures(HOST, record, True) == (2048, 2048)


def test_no_swap_accounting_shows_no_swap() -> None:
    record = MemoryRecord(256 * MIB, 10 * MIB, MemoryStat(), None)
    assert meminfo.swap_figures(HOST, record, True) == (0, 0)


def test_zero_limit_keeps_a_nonzero_memtotal() -> None:
    """MemTotal 0 made procps divide by zero (lxcfs#389)."""
    shown = values(meminfo.render(HOST, MemoryRecord(0, 0)))
    assert shown["MemTotal"] > 0


def test_host_lines_keep_their_order_and_layout() -> None:
    rendered = meminfo.render(HOST, MemoryRecord(None, 0)).decode().splitlines()
    assert [line.split(":")[0] for line in rendered] == [e.key for e in HOST.entries]
    assert rendered[0].startswith("MemTotal:       ")
    assert rendered[0].endswith(" kB")
    hugepages = next(line for line in rendered if line.startswith("HugePages_Total"))
    assert not hugepages.endswith("kB")


@pytest.mark.parametrize("kind", KINDS)
def test_missing_memory_stat_still_gives_total_and_free(tmp_path: Path, kind: str) -> None:
    host = container(tmp_path, kind)
    host.set_memory("/pod/ct", 256 * MIB, 10 * MIB)
    (host.cgroup_dir("memory", "/pod/ct") / "memory.stat").unlink()
    shown = values(host.service().render("proc/meminfo", 500))
    assert (shown["MemTotal"], shown["MemFree"]) == (256 * 1024, 246 * 1024)


@pytest.mark.parametrize("kind", KINDS)
def test_free_used_and_buff_cache_add_up(tmp_path: Path, kind: str) -> None:
    """free: used = total - free - buffers - cache - SReclaimable; none may go negative,
    even on v1 where memory.stat has no slab keys (the host's slab must not leak in)."""
    host = container(tmp_path, kind)
    stat = {"file": 30 * MIB, "active_file": 20 * MIB, "inactive_file": 10 * MIB}
    if kind == "v2":
        stat.update(slab_reclaimable=4 * MIB, slab_unreclaimable=2 * MIB)
    host.set_memory("/pod/ct", 256 * MIB, 100 * MIB, stat)
    shown = values(host.service().render("proc/meminfo", 500))
    buff_cache = shown["Buffers"] + shown["Cached"] + shown["SReclaimable"]
    used = shown["MemTotal"] - shown["MemFree"] - buff_cache
    assert used >= 0
    assert buff_cache <= shown["MemTotal"] - shown["MemFree"]
    assert shown["SReclaimable"] == (4 * 1024 if kind == "v2" else 0)
