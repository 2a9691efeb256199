"""`procfs-view show` against real cgroups of the running kernel (v1 here, v2 in the VM).

These are the issue's acceptance checks; marked ``cgroup2vm`` so the same tests also run
inside shared/tools/cgroup2-vm on a pure cgroup2 hierarchy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from procfs_view.cli import main
from procfs_view.identity import InitFinder
from procfs_view.loadavg import ThreadCount, count_threads, frozen_check
from tests.cgroups import TestCgroup, host_layout, test_cgroup, v1_kernel_counts_io_per_cgroup

pytestmark = [pytest.mark.root, pytest.mark.cgroup2vm, pytest.mark.usefixtures("real_cgroups")]

MIB = 1024 * 1024


@dataclass
class Shown:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def show(capfdbinary: pytest.CaptureFixture[bytes]) -> Callable[..., Shown]:
    """Run ``procfs-view show`` in this process (a Python start costs seconds in the VM)."""

    def run(pid: int, *files: str, flags: tuple[str, ...] = ()) -> Shown:
        capfdbinary.readouterr()
        code = main(["show", *flags, "--pid", str(pid), *files])
        out, err = capfdbinary.readouterr()
        return Shown(code, out.decode(), err.decode())

    return run


def meminfo_kb(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    raise AssertionError(f"{key} missing from:\n{text}")


def test_memory_cpuset_and_quota_of_a_real_cgroup(show: Callable[..., Shown]) -> None:
    with test_cgroup(memory_limit=256 * MIB, cpus="0", cfs=(50000, 100000)) as cgroup:
        sleeper = cgroup.spawn(["sleep", "120"])
        result = show(sleeper.pid, "meminfo", "cpuinfo", "cpu/online")
    assert result.returncode == 0, result.stderr
    assert "MemTotal:         262144 kB" in result.stdout.splitlines()
    assert 0 <= meminfo_kb(result.stdout, "MemFree") <= 262144
    assert result.stdout.count("processor\t: ") == 1
    assert result.stdout.endswith("\n0\n")


def test_each_file_separately(show: Callable[..., Shown]) -> None:
    with test_cgroup(memory_limit=256 * MIB, cpus="0", cfs=(50000, 100000)) as cgroup:
        sleeper = cgroup.spawn(["sleep", "120"])
        meminfo = show(sleeper.pid, "meminfo")
        cpuinfo = show(sleeper.pid, "proc/cpuinfo")
        online = show(sleeper.pid, "cpu/online")
        stat = show(sleeper.pid, "/proc/stat")
    assert meminfo_kb(meminfo.stdout, "MemTotal") == 262144
    assert cpuinfo.stdout.count("processor\t: ") == 1
    assert online.stdout == "0\n"
    cpu_lines = [line for line in stat.stdout.splitlines() if line.startswith("cpu")]
    assert [line.split()[0] for line in cpu_lines] == ["cpu", "cpu0"]


def test_root_cpuacct_cgroup_in_a_cpuset_sees_its_cpus_only(show: Callable[..., Shown]) -> None:
    """v1: a process in a cpuset cgroup but the root cpuacct one (the review's runF.sh)
    read every host CPU in /proc/stat while nproc said 1."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs for a cpuset to leave some out")
    with test_cgroup(cpus="1") as cgroup:
        if cgroup.version != 1:
            pytest.skip("v2 has no root cgroup for CPU time apart from the cpuset's")
        sleeper = subprocess.Popen(["sleep", "120"])
        try:
            (cgroup.directory("cpuset") / "cgroup.procs").write_text(f"{sleeper.pid}\n")
            online = show(sleeper.pid, "cpu/online")
            stat = show(sleeper.pid, "stat")
            renumbered = show(sleeper.pid, "stat", flags=("--enable-cfs",))
        finally:
            sleeper.kill()
            sleeper.wait()
    assert online.stdout == "1\n"
    lines = [line.split() for line in stat.stdout.splitlines() if line.startswith("cpu")]
    assert [line[0] for line in lines] == ["cpu", "cpu1"]
    assert lines[0][1:] == lines[1][1:]  # the aggregate is the one CPU's line
    names = [line.split()[0] for line in renumbered.stdout.splitlines() if line.startswith("cpu")]
    assert names == ["cpu", "cpu0"]


def test_cpu_view_counts_quota_over_period(show: Callable[..., Shown]) -> None:
    with test_cgroup(cpus="0-1", cfs=(150000, 100000)) as cgroup:
        sleeper = cgroup.spawn(["sleep", "120"])
        with_view = show(sleeper.pid, "cpu/online", "cpuinfo", flags=("--enable-cfs",))
    assert with_view.returncode == 0, with_view.stderr
    assert with_view.stdout.startswith("0-1\n")
    assert with_view.stdout.count("processor\t: ") == 2


def test_cpu_view_half_a_cpu_is_one_cpu(show: Callable[..., Shown]) -> None:
    with test_cgroup(cpus="0-1", cfs=(50000, 100000)) as cgroup:
        sleeper = cgroup.spawn(["sleep", "120"])
        plain = show(sleeper.pid, "cpu/online")
        with_view = show(sleeper.pid, "cpu/online", flags=("--enable-cfs",))
    assert plain.stdout == "0-1\n"
    assert with_view.stdout == "0\n"


def test_the_cpus_shown_are_the_granted_ones(show: Callable[..., Shown]) -> None:
    """v2: a container that asks for CPUs 0-1 under a parent limited to 0 runs on 0 only
    (cpuset.cpus.effective), and that is the count nproc and getconf must see."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs to ask for more than the parent grants")
    with test_cgroup(cpus="0") as cgroup:
        if cgroup.version != 2:
            pytest.skip("v1 refuses a child cpuset wider than its parent's")
        parent = cgroup.directory("cpuset")
        (parent / "cgroup.subtree_control").write_text("+cpuset")
        child = parent / "ct"
        child.mkdir()
        try:
            (child / "cpuset.cpus").write_text("0-1")
            assert (child / "cpuset.cpus.effective").read_text().strip() == "0"
            sleeper = subprocess.Popen(["sleep", "120"])
            try:
                (child / "cgroup.procs").write_text(str(sleeper.pid))
                result = show(sleeper.pid, "cpu/online", "cpuinfo")
            finally:
                sleeper.kill()
                sleeper.wait()
        finally:
            for _attempt in range(100):
                try:
                    child.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0\n")
    assert result.stdout.count("processor\t: ") == 1


def test_usage_of_a_busy_cgroup_shows_in_meminfo_and_stat(show: Callable[..., Shown]) -> None:
    allocate = (
        "b = bytearray(64 * 1024 * 1024); import time; print('ok', flush=True); time.sleep(60)"
    )
    spin = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass\nprint('done')"
    with test_cgroup(memory_limit=256 * MIB, cpus="0") as cgroup:
        holder = cgroup.spawn([sys.executable, "-c", allocate], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ok"
        cgroup.run([sys.executable, "-c", spin])
        result = show(holder.pid, "meminfo", "stat")
    used_kb = 262144 - meminfo_kb(result.stdout, "MemFree")
    assert used_kb >= 64 * 1024
    cpu0 = next(line for line in result.stdout.splitlines() if line.startswith("cpu0 "))
    user, system = int(cpu0.split()[1]), int(cpu0.split()[3])
    assert user + system >= 100  # at least 1 s of CPU, in USER_HZ ticks


def test_vanished_pid_exits_1_with_one_line(show: Callable[..., Shown]) -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    result = show(process.pid, "meminfo")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(process.pid) in result.stderr


def test_unknown_file_exits_2_listing_known_ones(show: Callable[..., Shown]) -> None:
    result = show(1, "nonsense")
    assert result.returncode == 2
    assert "proc/meminfo" in result.stderr
    assert "sys/devices/system/cpu/online" in result.stderr


def _devices(diskstats: str) -> list[str]:
    return [line.split()[2] for line in diskstats.splitlines() if len(line.split()) > 3]


def test_diskstats_is_never_an_uncounted_empty_file(show: Callable[..., Shown]) -> None:
    """A container that writes to disk sees that I/O, or (on a v1 kernel that counts no
    I/O per cgroup: >= 6.10 without throttle rules or BFQ) the host's file: never an
    empty file claiming it did none."""
    with test_cgroup(memory_limit=256 * MIB) as cgroup:
        # (In the cgroup2 VM /var/tmp may be read-only: v2's io.stat counts what it counts.)
        cgroup.run(["sh", "-c", "dd if=/dev/zero of=/var/tmp/pv-io-$$ bs=64k count=64 "
                    "oflag=direct,dsync status=none; rm -f /var/tmp/pv-io-$$; true"])  # fmt: skip
        writer = cgroup.spawn(["sleep", "120"])
        shown = show(writer.pid, "diskstats")
        v1_counted = cgroup.version == 1 and v1_kernel_counts_io_per_cgroup()
        uncounted = cgroup.version == 1 and not v1_counted
    assert shown.returncode == 0, shown.stderr
    devices = _devices(shown.stdout)
    host_devices = _devices(Path("/proc/diskstats").read_text())
    if uncounted:
        assert sorted(devices) == sorted(host_devices)
    else:
        assert set(devices) <= set(host_devices)
        if v1_counted:
            assert devices, "the container's own writes are missing"


@contextlib.contextmanager
def _bfq_loop_device(tmp_path: Path) -> Iterator[str]:
    """A 32 MiB loop device of our own, scheduled by BFQ; detached afterwards."""
    image = tmp_path / "disk.img"
    with image.open("wb") as handle:
        handle.truncate(32 * MIB)
    device = subprocess.run(
        ["losetup", "--find", "--show", "--direct-io=on", str(image)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    scheduler = Path(f"/sys/block/{Path(device).name}/queue/scheduler")
    choices = scheduler.read_text()
    before = choices[choices.index("[") + 1 : choices.index("]")] if "[" in choices else ""
    try:
        if "bfq" not in choices:
            pytest.skip("no BFQ I/O scheduler in this kernel")
        scheduler.write_text("bfq")
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
        if before:
            scheduler.write_text(before)  # the loop device's node outlives the detach


def test_diskstats_with_bfq_on_one_device_only_is_the_hosts(
    show: Callable[..., Shown], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """BFQ counts the container's reads of one loop device, but no layer counts the
    host's busy disk (Linux >= 6.10, no throttle rule, mq-deadline): the container's I/O
    there is unknown, so it gets the host's file, not one that lists only the loop device
    (a review's case: every container's diskstats went empty once a BFQ device appeared)."""
    if host_layout().hierarchy_for("blkio") is None or shutil.which("losetup") is None:
        pytest.skip("needs a v1 blkio hierarchy and losetup")
    if v1_kernel_counts_io_per_cgroup():
        pytest.skip("this kernel already counts some host I/O per cgroup (throttle or BFQ)")
    with _bfq_loop_device(tmp_path) as device, test_cgroup(memory_limit=256 * MIB) as cgroup:
        cgroup.run(["dd", f"if={device}", "of=/dev/null", "bs=64k", "count=32", "iflag=direct",
                    "status=none"])  # fmt: skip
        if not v1_kernel_counts_io_per_cgroup():
            pytest.skip("BFQ does not count I/O per cgroup here (no CONFIG_BFQ_GROUP_IOSCHED)")
        reader = cgroup.spawn(["sleep", "120"])
        shown = show(reader.pid, "diskstats")
        host_devices = _devices(Path("/proc/diskstats").read_text())
    assert shown.returncode == 0, shown.stderr
    assert sorted(_devices(shown.stdout)) == sorted(host_devices)  # vda is busy, uncounted
    assert any("no I/O per cgroup on" in record.getMessage() for record in caplog.records)


# The init of a new pid namespace: holds ~96 MiB, starts the caller (its child) in the
# cgroup given as argv[1:] (cgroup.procs files), says "ready", and sleeps.
SYSTEM_CONTAINER_INIT = r"""
import os, sys, time
hog = bytearray(96 << 20)
for index in range(0, len(hog), 4096):
    hog[index] = 1
child = os.fork()
if child == 0:
    for procs in sys.argv[1:]:
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    os.execvp("sleep", ["sleep", "120"])
time.sleep(0.2)
print("ready", flush=True)
time.sleep(120)
"""


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@contextlib.contextmanager
def _pid_namespace(argv: Sequence[str], ready: str, **popen: Any) -> Iterator[tuple[int, int]]:
    """Run ``argv`` as the init of a new pid namespace (``unshare --pid --fork``); once it
    printed the ``ready`` line, yield the host pids of that init and of its one child.
    Everything in the namespace is killed afterwards (its init dies with unshare)."""
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", *argv],
        stdout=subprocess.PIPE,
        text=True,
        **popen,
    )
    try:
        assert unshare.stdout is not None
        assert unshare.stdout.readline() == f"{ready}\n"
        (init,) = _children(unshare.pid)
        (child,) = _children(init)
        yield init, child
    finally:
        unshare.kill()
        unshare.wait(timeout=30)
        if unshare.stdout is not None:
            unshare.stdout.close()


@contextlib.contextmanager
def _children_of(container: TestCgroup, *names: str) -> Iterator[list[list[str]]]:
    """Child cgroups of a test cgroup in every hierarchy (the cgroup.procs files of each
    name), removed afterwards once empty. v1 cpusets start empty: they get the parent's."""
    made: list[Path] = []
    try:
        if container.version == 2:  # the children get the controller the limit needs
            (container.directory("memory") / "cgroup.subtree_control").write_text("+memory")
        for path in container.directories.values():
            for name in names:
                (path / name).mkdir()
                made.append(path / name)
                for inherited in ("cpuset.cpus", "cpuset.mems"):
                    if container.version == 1 and (path / inherited).exists():
                        (path / name / inherited).write_text((path / inherited).read_text())
        yield [[str(path / name / "cgroup.procs") for path in container.directories.values()]
               for name in names]  # fmt: skip
    finally:
        for child in reversed(made):
            for _attempt in range(100):
                try:
                    child.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def test_a_session_below_the_container_init_sees_the_containers_memory(
    show: Callable[..., Shown],
) -> None:
    """A system container (LXD/Incus, nspawn, systemd in Docker): its init in
    ``<ct>/init.scope``, an SSH session or a service in a cgroup of its own below ``<ct>``
    with no limit of its own. free in that session must show the container's memory in
    use (the init's ~96 MiB), not just the session's own few MiB under the container's
    limit. LXCFS takes the init's cgroup too."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    with (
        test_cgroup(memory_limit=256 * MIB) as container,
        _children_of(container, "init.scope", "session") as (init_scope, session_cgroup),
    ):

        def join_init_scope() -> None:
            for procs in init_scope:
                with open(procs, "w") as handle:
                    handle.write(str(os.getpid()))

        argv = [sys.executable, "-c", SYSTEM_CONTAINER_INIT, *session_cgroup]
        with _pid_namespace(argv, "ready", preexec_fn=join_init_scope) as (_init, session):
            shown = show(session, "meminfo")
    assert shown.returncode == 0, shown.stderr
    assert meminfo_kb(shown.stdout, "MemTotal") == 256 * 1024
    assert meminfo_kb(shown.stdout, "MemFree") <= (256 - 90) * 1024, shown.stdout


def _wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_paused_container_puts_no_load_on_its_loadavg() -> None:
    """docker pause freezes the container's cgroup; the kernel then shows its tasks in
    state D (which the sampler counts as load, as LXCFS does) although its own load
    average leaves frozen tasks out: a paused busy container must show no load."""
    layout = host_layout()
    with test_cgroup() as cgroup:
        busy = cgroup.spawn([sys.executable, "-c", "while True: pass"])
        sleeper = cgroup.spawn(["sleep", "120"])
        walked = cgroup.directory("cpu")
        check = frozen_check(layout)
        _wait_for(lambda: (count_threads(walked, frozen=check) or ThreadCount()).running >= 1)
        freezer: Path | None = None
        if cgroup.version == 2:
            state = cgroup.directory("memory")
            (state / "cgroup.freeze").write_text("1")
            _wait_for(lambda: "frozen 1" in (state / "cgroup.events").read_text())
        else:
            hierarchy = layout.hierarchy_for("freezer")
            if hierarchy is None:
                pytest.skip("no v1 freezer hierarchy")
            freezer = hierarchy.mount_point / cgroup.name
            freezer.mkdir()
            for process in (busy, sleeper):
                (freezer / "cgroup.procs").write_text(str(process.pid))
            (freezer / "freezer.state").write_text("FROZEN")
            _wait_for(lambda: (freezer / "freezer.state").read_text().strip() == "FROZEN")
        try:
            paused = count_threads(walked, frozen=check)
        finally:
            if freezer is None:
                (cgroup.directory("memory") / "cgroup.freeze").write_text("0")
            else:
                (freezer / "freezer.state").write_text("THAWED")
            for process in (busy, sleeper):
                process.kill()
                process.wait(timeout=30)
            if freezer is not None:
                _wait_for(lambda: not (freezer / "cgroup.procs").read_text().strip())
                freezer.rmdir()
    assert paused is not None
    assert paused.total >= 2
    assert paused.running == 0


def test_the_init_of_a_new_pid_namespace_is_found_up_the_parents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tenant allowed user namespaces can make pid namespaces in a loop and read from a
    non-init process in each: finding its init must not scan every process on the node
    each time (it walks up the parents)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    argv = ["sh", "-c", "sleep 120 & echo started; wait"]
    with _pid_namespace(argv, "started") as (init, caller):
        finder = InitFinder()
        monkeypatch.setattr(finder, "_scan", lambda namespace: pytest.fail("scanned /proc"))
        assert finder.find(caller) == init
