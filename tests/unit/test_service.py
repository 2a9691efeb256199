"""The service's answers: who is the container, and what a caller gets when inputs are bad."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from procfs_view import identity
from procfs_view.errors import CgroupDataError, ProcessGone, ServeHost
from procfs_view.options import ViewOptions
from procfs_view.service import ViewService
from tests.fixtures import FixtureHost

MIB = 1024 * 1024


def container(tmp_path: Path, kind: str = "v2") -> FixtureHost:
    host = FixtureHost(tmp_path, kind)
    host.add_process(700, "/ct", namespace="ct", nspid=(700, 1), start_ticks=90000)
    host.add_process(701, "/ct", namespace="ct", nspid=(701, 12), start_ticks=95000)
    host.set_memory("/ct", 256 * MIB, 10 * MIB)
    host.set_cpu("/ct", "0", None, {0: (2 * 10**9, 10**9)})
    return host


def host_file(host: FixtureHost, path: str) -> bytes:
    return host.service().host_content(path)


@pytest.mark.parametrize("kind", ["v1", "v2", "hybrid"])
def test_served_paths_follow_the_layout(tmp_path: Path, kind: str) -> None:
    paths = FixtureHost(tmp_path, kind).service().served_paths()
    assert "proc/meminfo" in paths
    assert "sys/devices/system/cpu/online" in paths
    assert ("proc/pressure/memory" in paths) == (kind == "v2")


def test_uptime_counts_from_the_namespace_init(tmp_path: Path) -> None:
    """pid 701 is not its namespace's init; 700 (NSpid ... 1) is, started at 900 s."""
    host = container(tmp_path)
    uptime, idle = map(float, host.service().render("proc/uptime", 701).split())
    assert uptime == pytest.approx(1000.0 - 900.0)
    assert idle == pytest.approx(100.0 - 3.0)


def test_uptime_with_process_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A process may name itself with any bytes (prctl PR_SET_NAME), and the kernel prints
    the name raw in /proc/<pid>/stat and status: the init and its namespace are still
    found (699, scanned first, is not it), and the container's uptime is its own."""
    host = container(tmp_path)
    host.add_process(699, "/ct", namespace="ct", nspid=(699, 40), start_ticks=96000)
    for pid in (699, 700):
        for name, plain, odd in (
            ("stat", b"(some", b"(\xfe\xff"),
            ("status", b"\tx\n", b"\t\xff\n"),
        ):
            where = host.proc / str(pid) / name
            where.write_bytes(where.read_bytes().replace(plain, odd, 1))
    service = host.service()
    assert service.inits.find(701) == 700
    uptime, _ = map(float, service.render("proc/uptime", 701).split())
    assert uptime == pytest.approx(1000.0 - 900.0)


def test_uptime_in_the_host_pid_namespace_is_the_host_file(tmp_path: Path) -> None:
    host = container(tmp_path)
    host.add_process(702, "/ct", namespace="host-ns")
    assert host.service().answer("proc/uptime", 702) == host_file(host, "proc/uptime")


def test_init_cache_follows_a_new_init(tmp_path: Path) -> None:
    host = container(tmp_path)
    service = host.service()
    assert service.inits.find(701) == 700
    # The init exits; its pid is reused by an unrelated process with a later start time,
    # and the namespace's new init is 710.
    host.add_process(700, "/", namespace="host-ns", nspid=(700,), start_ticks=99000)
    host.add_process(710, "/ct", namespace="ct", nspid=(710, 1), start_ticks=98000)
    assert service.inits.find(701) == 710


def test_loadavg_is_the_host_file_without_the_sampler(tmp_path: Path) -> None:
    host = container(tmp_path)
    assert host.service().answer("proc/loadavg", 700) == host_file(host, "proc/loadavg")
    with_flag = host.service(ViewOptions(loadavg=True))
    assert with_flag.answer("proc/loadavg", 700) == host_file(host, "proc/loadavg")


def test_the_same_file_for_everyone_is_still_counted_per_container(tmp_path: Path) -> None:
    """loadavg without -l reads no cgroup; the FUSE layer's per-caller bound on open files
    asks whose it is: the caller's cgroups, or "" once it is gone."""
    host = container(tmp_path)
    host.add_process(800, "/other", namespace="other", nspid=(800, 1), start_ticks=90000)
    service = host.service()
    _, caller = service.open_answer("proc/loadavg", 700)
    assert caller is None
    owners = {service.owner_of(700), service.owner_of(701), service.owner_of(800)}
    assert len(owners) == 2
    assert "/ct" in service.owner_of(700)
    assert service.owner_of(999) == ""


def test_vanished_caller_gets_host_content_and_render_says_why(tmp_path: Path) -> None:
    host = container(tmp_path)
    service = host.service()
    with pytest.raises(ProcessGone):
        service.render("proc/meminfo", 999)
    assert service.answer("proc/meminfo", 999) == host_file(host, "proc/meminfo")


def test_virtualization_off_serves_host_files(tmp_path: Path) -> None:
    host = container(tmp_path)
    service = host.service(ViewOptions(virtualize=False))
    with pytest.raises(ServeHost):
        service.render("proc/meminfo", 700)
    assert service.answer("proc/meminfo", 700) == host_file(host, "proc/meminfo")


def test_a_file_opened_with_virtualization_off_shows_the_view_once_it_is_back_on(
    tmp_path: Path,
) -> None:
    """top or free -s started during a SIGUSR2 off spell keep their file open: once the
    view is back on, their re-reads show their container again (they stayed on the host
    file for good)."""
    host = container(tmp_path)
    service = host.service(ViewOptions(virtualize=False))
    content, caller = service.open_answer("proc/meminfo", 700)
    assert content == host_file(host, "proc/meminfo")
    assert service.reread("proc/meminfo", 700, caller) == host_file(host, "proc/meminfo")
    service.options = ViewOptions(virtualize=True)
    again = service.reread("proc/meminfo", 700, caller)
    assert again is not None
    assert mem_total(again) == 256 * 1024


FILES = {
    "limit": {"v1": "memory.limit_in_bytes", "v2": "memory.max"},
    "usage": {"v1": "memory.usage_in_bytes", "v2": "memory.current"},
    "cpu": {"v1": "cpuacct.usage_all", "v2": "cpu.stat"},
    "cpuset": {"v1": "cpuset.cpus", "v2": "cpuset.cpus"},
}


@pytest.mark.parametrize("kind", ["v1", "v2"])
@pytest.mark.parametrize(
    ("path", "controller", "file", "damage"),
    [
        ("proc/meminfo", "memory", "limit", "garbage"),
        ("proc/meminfo", "memory", "usage", "missing"),
        ("proc/swaps", "memory", "usage", "garbage"),
        ("proc/stat", "cpu", "cpu", "garbage"),
        ("proc/stat", "cpu", "cpu", "missing"),
        ("proc/cpuinfo", "cpuset", "cpuset", "garbage"),
        ("sys/devices/system/cpu/online", "cpuset", "cpuset", "garbage"),
    ],
)
def test_bad_input_falls_back_to_host_and_logs_once(
    tmp_path: Path,
    kind: str,
    path: str,
    controller: str,
    file: str,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = container(tmp_path, kind)
    target = host.cgroup_dir(controller, "/ct") / FILES[file][kind]
    if damage == "garbage":
        target.write_text("\x00garbage-garbage\n")
    else:
        target.unlink()
    service = host.service()
    with caplog.at_level(logging.WARNING, logger="procfs_view.service"):
        answers = [service.answer(path, 700) for _ in range(5)]
    assert answers == [host_file(host, path)] * 5
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "/ct" in message  # the caller's cgroup
    assert path in message
    assert "700" in message


def test_a_bug_in_a_view_falls_back_instead_of_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    host = container(tmp_path)
    service = host.service()

    def broken(*_: object) -> bytes:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr("procfs_view.views.meminfo.render", broken)
    with caplog.at_level(logging.WARNING, logger="procfs_view.service"):
        assert service.answer("proc/meminfo", 700) == host_file(host, "proc/meminfo")
    assert "ZeroDivisionError" in caplog.text


def test_two_containers_never_see_each_other(tmp_path: Path) -> None:
    host = container(tmp_path)
    host.add_process(800, "/other", namespace="other", nspid=(800, 1))
    host.set_memory("/other", 512 * MIB, 1 * MIB)
    service = host.service()
    first = service.answer("proc/meminfo", 700).decode().splitlines()[0]
    second = service.answer("proc/meminfo", 800).decode().splitlines()[0]
    assert first.split()[1] == str(256 * 1024)
    assert second.split()[1] == str(512 * 1024)


def test_non_utf8_host_file_is_a_data_error_and_falls_back(tmp_path: Path) -> None:
    host = container(tmp_path)
    (host.proc / "meminfo").write_bytes(b"MemTotal: \xff\xfe kB\n")
    service = host.service()
    with pytest.raises(CgroupDataError):
        service.render("proc/meminfo", 700)
    assert service.answer("proc/meminfo", 700) == b"MemTotal: \xff\xfe kB\n"


def mem_total(content: bytes) -> int:
    return int(content.split(b"\n", 1)[0].split()[1])


def test_a_reread_is_fresh_for_the_same_caller_and_nothing_for_another(tmp_path: Path) -> None:
    """A re-read of an open file (free -s seeks back to 0) is computed afresh while the
    opener is in the same cgroups; once it has exited, moved, or its pid belongs to a
    process of another container, there is nothing to re-read (the file keeps its
    content): never the other container's numbers, nor the host's."""
    host = container(tmp_path)
    host.set_memory("/other", 64 * MIB, MIB)
    service = host.service()
    content, caller = service.open_answer("proc/meminfo", 700)
    assert mem_total(content) == 256 * 1024
    host.set_memory("/ct", 128 * MIB, 10 * MIB)
    again = service.reread("proc/meminfo", 700, caller)
    assert again is not None
    assert mem_total(again) == 128 * 1024
    host.add_process(700, "/other", namespace="other")  # pid 700 reused in another container
    assert service.reread("proc/meminfo", 700, caller) is None
    (host.proc / "700" / "cgroup").unlink()  # and exited
    assert service.reread("proc/meminfo", 700, caller) is None
    # A file that is the same for everyone is re-read for anyone.
    host_only, anyone = service.open_answer("proc/loadavg", 701)
    assert service.reread("proc/loadavg", 999, anyone) == host_only


def test_a_reread_of_a_path_no_longer_served_keeps_the_content(tmp_path: Path) -> None:
    """A reload can bring code that serves fewer paths; a file opened before goes on
    showing what it showed (it answered EIO)."""
    service = container(tmp_path).service()
    _, caller = service.open_answer("proc/meminfo", 700)
    assert service.reread("proc/retired", 700, caller) is None


def _kb(text: bytes, key: str) -> int:
    line = next(ln for ln in text.decode().splitlines() if ln.startswith(f"{key}:"))
    return int(line.split()[1])


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_a_session_below_the_init_sees_its_containers_memory(tmp_path: Path, kind: str) -> None:
    """A system container: init in <ct>/init.scope, an SSH session in a cgroup of its own
    below <ct> without a limit. Its free must show the container's use, not its own."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(700, "/ct/init.scope", namespace="ct", nspid=(700, 1))
    host.add_process(702, "/ct/user.slice/session-3.scope", namespace="ct", nspid=(702, 40))
    host.set_memory("/ct", 256 * MIB, 200 * MIB)
    host.set_memory("/ct/user.slice/session-3.scope", None, 10 * MIB)
    meminfo = host.service().answer("proc/meminfo", 702)
    assert _kb(meminfo, "MemTotal") == 256 * 1024
    assert _kb(meminfo, "MemFree") == 56 * 1024


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_pods_sharing_a_pid_namespace_keep_their_own_cgroups(tmp_path: Path, kind: str) -> None:
    """shareProcessNamespace: the pause container is the init, in a sibling cgroup; each
    container keeps its own limit."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(800, "/pod/pause", namespace="pod", nspid=(800, 1))
    host.add_process(801, "/pod/app", namespace="pod", nspid=(801, 7))
    host.set_memory("/pod/pause", 8 * MIB, 1 * MIB)
    host.set_memory("/pod/app", 128 * MIB, 20 * MIB)
    meminfo = host.service().answer("proc/meminfo", 801)
    assert _kb(meminfo, "MemTotal") == 128 * 1024
    assert _kb(meminfo, "MemFree") == 108 * 1024


def test_same_cgroups_other_namespace_is_another_cache_entry(tmp_path: Path) -> None:
    """A host process placed in a container's session cgroup sees that cgroup; the
    container's own session, read right after within the cache TTL, its container."""
    host = FixtureHost(tmp_path, "v2")
    host.add_process(700, "/ct/init.scope", namespace="ct", nspid=(700, 1))
    host.add_process(702, "/ct/s", namespace="ct", nspid=(702, 40))
    host.add_process(900, "/ct/s")  # the host's pid namespace
    host.set_memory("/ct", 256 * MIB, 200 * MIB)
    host.set_memory("/ct/s", None, 10 * MIB)
    service = ViewService(host.roots(), ViewOptions(), cache_ttl=10.0)
    assert _kb(service.answer("proc/meminfo", 900), "MemFree") == 246 * 1024
    assert _kb(service.answer("proc/meminfo", 702), "MemFree") == 56 * 1024


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_a_service_with_limits_of_its_own_keeps_its_own_cgroups(tmp_path: Path, kind: str) -> None:
    """A JVM service with MemoryMax=512M (or a CPU quota, or fewer CPUs) in a system
    container must see those, not the container's 8 GiB: it sizes its heap from them."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(700, "/ct/init.scope", namespace="ct", nspid=(700, 1))
    host.add_process(702, "/ct/system.slice/jvm.service", namespace="ct", nspid=(702, 40))
    host.add_process(703, "/ct/system.slice/cron.service", namespace="ct", nspid=(703, 41))
    host.add_process(704, "/ct/system.slice/pinned.service", namespace="ct", nspid=(704, 42))
    host.set_memory("/ct", 8192 * MIB, 1024 * MIB)
    host.set_memory("/ct/system.slice/jvm.service", 512 * MIB, 100 * MIB)
    host.set_memory("/ct/system.slice/cron.service", None, 10 * MIB)
    host.set_memory("/ct/system.slice/pinned.service", None, 10 * MIB)
    host.set_cpu("/ct", "0-3")
    host.set_cpu("/ct/system.slice/jvm.service", "0-3")
    host.set_cpu("/ct/system.slice/cron.service", "0-3", (50_000, 100_000))
    host.set_cpu("/ct/system.slice/pinned.service", "1")
    service = host.service()
    assert _kb(service.answer("proc/meminfo", 702), "MemTotal") == 512 * 1024
    # A CPU quota of its own keeps all its cgroups: its own usage under the 8 GiB.
    assert _kb(service.answer("proc/meminfo", 703), "MemFree") == (8192 - 10) * 1024
    assert service.answer("proc/cpuinfo", 704).count(b"processor\t: ") == 1
    assert _kb(service.answer("proc/meminfo", 704), "MemFree") == (8192 - 10) * 1024


def test_scans_for_new_namespaces_inits_are_rate_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding the init of a namespace whose reader's parents lie outside it (setns)
    scans every process; a tenant making such namespaces in a loop gets the fallback
    (its own cgroups, the host's uptime) past a burst, not the FUSE thread stalled."""
    monkeypatch.setattr(identity, "SCAN_BURST", 1)
    host = FixtureHost(tmp_path, "v2")
    for index, name in enumerate(("a", "b")):
        host.add_process(800 + index, f"/{name}", namespace=name, nspid=(800 + index, 1))
        host.add_process(900 + index, f"/{name}", namespace=name, nspid=(900 + index, 7))
    now = [100.0]
    finder = identity.InitFinder(host.proc, clock=lambda: now[0])
    assert finder.find(900) == 800
    with pytest.raises(ServeHost):
        finder.find(901)
    now[0] += 1.0
    assert finder.find(901) == 801
    assert finder.find(900) == 800  # known namespaces are cached, no scan


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_a_limit_no_tighter_than_the_containers_still_lifts(tmp_path: Path, kind: str) -> None:
    """MemoryMax=16G on a service in an 8 GiB container changes nothing it would be shown:
    it gets the container's numbers. A limit file it cannot read keeps its own."""
    host = FixtureHost(tmp_path, kind)
    host.add_process(700, "/ct/init.scope", namespace="ct", nspid=(700, 1))
    host.add_process(702, "/ct/loose.service", namespace="ct", nspid=(702, 40))
    host.set_memory("/ct", 8192 * MIB, 1024 * MIB)
    host.set_memory("/ct/loose.service", 16384 * MIB, 10 * MIB)
    service = host.service()
    assert _kb(service.answer("proc/meminfo", 702), "MemFree") == 7168 * 1024

    failing_service = host.service()
    reads = failing_service.cgroups.read_file
    limit_file = "memory.limit_in_bytes" if kind == "v1" else "memory.max"

    def failing(path: str) -> bytes:
        if path.endswith(f"loose.service/{limit_file}"):
            raise OSError(errno.EMFILE, "Too many open files")
        return reads(path)

    failing_service.cgroups.read_file = failing
    meminfo = failing_service.answer("proc/meminfo", 702)
    assert _kb(meminfo, "MemFree") != 7168 * 1024  # not lifted (or the host's file)


def test_the_nodes_own_callers_are_told_apart(tmp_path: Path) -> None:
    host = container(tmp_path)
    host.add_process(900, "/system.slice/kubelet.service")  # the daemon's pid namespace
    service = host.service()
    assert service.is_host_caller(900)
    assert not service.is_host_caller(700)
    assert not service.is_host_caller(999)  # gone


def test_the_init_cache_lets_the_least_recent_go(tmp_path: Path) -> None:
    """A flood of new namespaces pushes out the least recently asked, not everyone's."""
    host = FixtureHost(tmp_path, "v2")
    for index in range(4):
        host.add_process(800 + index, f"/c{index}", namespace=f"n{index}", nspid=(800 + index, 1))
    finder = identity.InitFinder(host.proc, max_entries=2)
    assert finder.find(800) == 800
    assert finder.find(801) == 801
    assert finder.find(800) == 800  # asked again: the most recent now
    finder.find(802)
    assert list(finder._cache) == [finder._namespace(800), finder._namespace(802)]


def test_past_the_scan_budget_a_caller_gets_its_own_cgroups_and_the_hosts_uptime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity, "SCAN_BURST", 0)
    host = FixtureHost(tmp_path, "v2")
    host.add_process(800, "/ct/init.scope", namespace="ct", nspid=(800, 1))
    host.add_process(802, "/ct/s", namespace="ct", nspid=(802, 9))  # needs a scan
    host.set_memory("/ct", 256 * MIB, 200 * MIB)
    host.set_memory("/ct/s", 128 * MIB, 10 * MIB)
    service = host.service()
    assert _kb(service.answer("proc/meminfo", 802), "MemTotal") == 128 * 1024  # its own
    assert service.answer("proc/uptime", 802) == host_file(host, "proc/uptime")


def test_v2_a_caller_below_its_init_without_the_memory_controller_is_lifted(
    tmp_path: Path,
) -> None:
    """v2 forbids enabling memory below a cgroup that holds processes (an init that is
    not systemd, in <ct> itself): the caller's cgroup has no memory files, so no limit of
    its own. It gets its container's numbers, not the host file."""
    host = FixtureHost(tmp_path, "v2")
    host.add_process(700, "/ct", namespace="ct", nspid=(700, 1))
    host.add_process(702, "/ct/svc", namespace="ct", nspid=(702, 40))
    host.set_memory("/ct", 256 * MIB, 200 * MIB)
    meminfo = host.service().answer("proc/meminfo", 702)
    assert _kb(meminfo, "MemTotal") == 256 * 1024
    assert _kb(meminfo, "MemFree") == 56 * 1024


def _advance_host_stat(host: FixtureHost, jiffies: int) -> None:
    """Every CPU line of the host's /proc/stat a little further on, as after some time."""
    lines = []
    for line in (host.proc / "stat").read_text().splitlines():
        if line.startswith("cpu"):
            name, *counters = line.split()
            line = " ".join([name, *(str(int(value) + jiffies) for value in counters)])
        lines.append(line)
    (host.proc / "stat").write_text("\n".join(lines) + "\n")


def test_files_read_for_rates_show_time_passing_within_the_cache_ttl(tmp_path: Path) -> None:
    """top opens /proc/uptime for every frame and keeps /proc/stat open: with a cached
    copy, two frames 50 ms apart showed no time passing (0 % CPU, then a process at 99.9
    %). A cached uptime moves on with the clock (its idle waits for the next
    computation); a re-read of stat is computed afresh; a fresh open of stat within the
    TTL still shares the cached copy (what the cache is for)."""
    host = container(tmp_path)
    now = [100.0]
    service = ViewService(host.roots(), ViewOptions(), cache_ttl=10.0, clock=lambda: now[0])
    uptime, idle = service.answer("proc/uptime", 700).split()
    stat, caller = service.open_answer("proc/stat", 700)
    now[0] += 0.5
    (host.proc / "uptime").write_text("1000.50 3500.10\n")
    _advance_host_stat(host, 5)
    host.set_cpu("/ct", "0", None, {0: (2 * 10**9 + 10**7, 10**9)})
    later_uptime, later_idle = service.answer("proc/uptime", 700).split()
    assert float(later_uptime) == pytest.approx(float(uptime) + 0.5, abs=0.011)
    assert later_idle == idle
    assert service.answer("proc/stat", 701) == stat  # same cgroups, within the TTL
    again = service.reread("proc/stat", 700, caller)
    assert again is not None
    assert again != stat
    assert service.answer("proc/stat", 701) == again  # and the fresh copy is shared
    now[0] += 10.0  # past the TTL: computed afresh, and never less than the moved copy
    fresh_uptime, _ = service.answer("proc/uptime", 700).split()
    assert float(fresh_uptime) >= float(later_uptime)
