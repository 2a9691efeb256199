"""Restart-proof binds (issue 6): a killed, stopped or reloaded daemon never leaves a
running container with "Transport endpoint is not connected".

Five "containers": busybox shells looping ``head -n1 /proc/meminfo`` in their own mount
namespaces (``unshare -m --propagation private``) and their own test cgroups, with our
files bound over /proc and /sys; one of them chrooted into a tree holding nothing but
/bin/busybox and a /proc, so nothing in it can help re-attaching. Each shell prints
``ok <line>`` or ``err <message>`` per read; a thread per container timestamps them.

Dead or alive is checked from outside through ``/proc/<pid>/root`` (statvfs on the
bind: ENOTCONN once its daemon is gone), which reaches the container's own mounts.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from procfs_view.mountinfo import MountEntry, mounts_at, parse_mountinfo
from tests.cgroups import TestCgroup, test_cgroup
from tests.integration.fake_lxcfs import FAKE_MEMTOTAL_KB
from tests.integration.helpers import (
    BOUND_FILES,
    FSTYPE,
    MIB,
    REPO,
    TIMEOUT,
    Daemon,
    StartDaemon,
    in_view_argv,
    in_view_env,
    is_mounted,
    kill_started,
    run_cli,
    wait_mounted,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse]

# The acceptance bound: every container reads valid meminfo again this soon after
# the daemon is started again.
RECOVERY_BOUND = 2.0
LIMITS_MIB = (96, 128, 160, 192, 224)

READ_LOOP = """
while :; do
  if out=$(busybox head -n 1 /proc/meminfo 2>&1); then echo "ok $out"; else echo "err $out"; fi
  busybox usleep 10000
done
"""

# The chrooted container: its own /proc, our proc files bound over it, then chroot into a
# tree with busybox only (no mount, no shell of the host, no Python).
CHROOT_AND_EXEC = """
set -e
mount -t proc proc "$CHROOT/proc"
for f in $PROCFS_VIEW_FILES; do
  case "$f" in proc/*) mount --bind "$PROCFS_VIEW_MNT/$f" "$CHROOT/$f";; esac
done
exec chroot "$CHROOT" /bin/busybox sh -c "$READ_LOOP"
"""

_MEMTOTAL = re.compile(r"^ok MemTotal:\s+(\d+) kB$")


@pytest.fixture(autouse=True)
def _tools() -> None:
    for tool in ("unshare", "busybox", "chroot"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@dataclass
class Container:
    """A looping reader in its own mount namespace and cgroup."""

    name: str
    process: subprocess.Popen[str]
    expected_kb: int
    bound: tuple[str, ...]
    reads: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pid(self) -> int:
        return self.process.pid

    def collect(self) -> None:
        """Reader thread: timestamp every line the container prints, until EOF."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.lock:
                self.reads.append((time.monotonic(), line.rstrip("\n")))

    def reads_after(self, moment: float) -> list[tuple[float, str]]:
        with self.lock:
            return [(when, line) for when, line in self.reads if when > moment]

    def good(self, line: str) -> bool:
        match = _MEMTOTAL.match(line)
        return match is not None and int(match.group(1)) == self.expected_kb

    def read_well_after(self, moment: float, count: int = 1) -> bool:
        """Whether at least ``count`` reads after ``moment`` showed its own limit."""
        return sum(1 for _, line in self.reads_after(moment) if self.good(line)) >= count

    def paths(self, mountpoint: Path | None = None) -> set[str]:
        """Its binds of our files, plus (unless chrooted) its copy of ``mountpoint``."""
        paths = {f"/{f}" for f in self.bound}
        if mountpoint is not None and self.name != "chrooted":
            paths.add(str(mountpoint))
        return paths

    def bind_state(self) -> str:
        """``alive``, ``dead`` (ENOTCONN) or the error, of its /proc/meminfo bind."""
        try:
            os.statvfs(f"/proc/{self.pid}/root/proc/meminfo")
        except OSError as exc:
            return "dead" if exc.errno == errno.ENOTCONN else exc.strerror or str(exc)
        return "alive"

    def mountinfo(self) -> list[MountEntry]:
        return parse_mountinfo(Path(f"/proc/{self.pid}/mountinfo").read_text())


def wait_for(predicate: Callable[[], bool], what: str, deadline: float) -> None:
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@contextlib.contextmanager
def containers(daemon: Daemon, tmp_path: Path) -> Iterator[list[Container]]:
    """Four plain containers and one chrooted one, each reading its own limit already."""
    tree = tmp_path / "chroot"
    (tree / "bin").mkdir(parents=True)
    (tree / "proc").mkdir()
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", tree / "bin" / "busybox")
    started: list[Container] = []
    threads: list[threading.Thread] = []
    cgroups: list[TestCgroup] = []
    with contextlib.ExitStack() as stack:
        try:
            for index, limit in enumerate(LIMITS_MIB):
                cgroup: TestCgroup = stack.enter_context(test_cgroup(memory_limit=limit * MIB))
                cgroups.append(cgroup)
                env = in_view_env(daemon.mountpoint)
                env["READ_LOOP"] = READ_LOOP
                if index == len(LIMITS_MIB) - 1:
                    env["CHROOT"] = str(tree)
                    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c"]
                    argv.append(CHROOT_AND_EXEC)
                    bound = tuple(f for f in BOUND_FILES if f.startswith("proc/"))
                    name = "chrooted"
                else:
                    argv = in_view_argv(["busybox", "sh", "-c", READ_LOOP])
                    bound = BOUND_FILES
                    name = f"plain-{index}"
                process = cgroup.spawn(
                    argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
                container = Container(name, process, limit * 1024, bound)
                started.append(container)
                thread = threading.Thread(target=container.collect, daemon=True)
                thread.start()
                threads.append(thread)
            deadline = time.monotonic() + TIMEOUT
            for container in started:
                wait_for(
                    functools.partial(container.read_well_after, 0.0),
                    f"{container.name} to read its limit",
                    deadline,
                )
            yield started
        finally:
            for container in started:
                kill_started(container.process)
            for thread in threads:
                thread.join(timeout=TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    # Our own cgroups are gone (the session check also sees other runs on a shared host).
    assert not [d for c in cgroups for d in c.directories.values() if d.exists()]


def without_rebinds(entries: list[MountEntry]) -> set[tuple[object, ...]]:
    """Everything in a mount table but our own mounts."""
    return {
        (e.mount_id, e.parent_id, e.device, e.root, e.mount_point, e.options, e.fstype, e.source)
        for e in entries
        if e.fstype != FSTYPE
    }


def rebinds(entries: list[MountEntry]) -> set[tuple[str, str]]:
    return {(e.mount_point, e.root) for e in entries if e.fstype == FSTYPE}


def device_of(mountpoint: Path) -> tuple[int, int]:
    info = os.stat(mountpoint)
    return os.major(info.st_dev), os.minor(info.st_dev)


def restart_and_measure(
    old: Daemon, stop: Callable[[Daemon], None], start_daemon: StartDaemon, boxes: list[Container]
) -> tuple[Daemon, float, float]:
    """Stop ``old`` with ``stop``, start a successor; (successor, window from the stop,
    window from the start) once every container reads its own limit again."""
    tables = {box.name: box.mountinfo() for box in boxes}
    stopped_at = time.monotonic()
    stop(old)
    assert {box.name: box.bind_state() for box in boxes} == {box.name: "dead" for box in boxes}
    started_at = time.monotonic()
    new = start_daemon(wait=False)
    deadline = started_at + RECOVERY_BOUND
    recovered: dict[str, float] = {}
    observed_alive: dict[str, float] = {}

    def all_recovered() -> bool:
        for box in boxes:
            if box.name in recovered:
                continue
            if box.name not in observed_alive:
                if box.bind_state() == "alive":
                    observed_alive[box.name] = time.monotonic()
                continue
            for when, line in box.reads_after(observed_alive[box.name]):
                if box.good(line):
                    recovered[box.name] = when
                    break
        return len(recovered) == len(boxes)

    try:
        wait_for(all_recovered, "every container to read its limit again", deadline)
    except AssertionError:
        status = {box.name: (box.bind_state(), box.reads_after(started_at)[-2:]) for box in boxes}
        raise AssertionError(
            f"not recovered within {RECOVERY_BOUND}s: {status}\n{new.log()}"
        ) from None
    wait_mounted(new)
    # A few more reads each: all good from then on, and nothing failed after recovery.
    last = max(recovered.values())
    wait_for(
        lambda: all(len(b.reads_after(last)) >= 3 for b in boxes), "more reads", last + TIMEOUT
    )
    fresh = device_of(new.mountpoint)
    for box in boxes:
        after_recovery = box.reads_after(recovered[box.name] - 1e-9)
        assert all(box.good(line) for _, line in after_recovery), (box.name, after_recovery)
        # Every successful read, before and after, showed this container's own limit.
        oks = [line for _, line in box.reads_after(0) if line.startswith("ok")]
        assert all(box.good(line) for line in oks), (box.name, set(oks))
        table = box.mountinfo()
        assert without_rebinds(table) == without_rebinds(tables[box.name]), box.name
        assert rebinds(table) == rebinds(tables[box.name]), box.name
        ours = box.paths(new.mountpoint)
        assert ours <= {path for path, _ in rebinds(table)}, box.name
        for entry in table:
            if entry.fstype == FSTYPE and entry.mount_point in ours:
                assert entry.device == fresh, (box.name, entry)
                assert "ro" in entry.options, (box.name, entry)
    assert " failed: " not in new.log()
    return new, last - stopped_at, last - started_at


def _kill(daemon: Daemon) -> None:
    daemon.process.kill()
    daemon.process.wait(timeout=TIMEOUT)


def _terminate(daemon: Daemon) -> None:
    assert daemon.stop() == 0


def report(kind: str, from_stop: float, from_start: float) -> None:
    """Measured windows, for tests/integration/REMOUNT-MEASUREMENTS.md (pytest -s)."""
    print(
        f"\n{kind}: error window {from_stop * 1000:.0f} ms from the stop, "
        f"{from_start * 1000:.0f} ms from starting the successor"
    )


def test_kill_9_and_restart_reattaches_every_container(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    first = start_daemon()
    with containers(first, tmp_path) as boxes:
        second, from_kill, from_start = restart_and_measure(first, _kill, start_daemon, boxes)
        assert from_start <= RECOVERY_BOUND
        report("kill -9", from_kill, from_start)
        # Again: the successor's own binds die and come back just the same.
        third, from_kill, from_start = restart_and_measure(second, _kill, start_daemon, boxes)
        report("kill -9 (second time)", from_kill, from_start)
        assert third.stop() == 0


def test_graceful_stop_and_start_reattaches_every_container(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    first = start_daemon()
    with containers(first, tmp_path) as boxes:
        second, from_stop, from_start = restart_and_measure(first, _terminate, start_daemon, boxes)
        report("SIGTERM", from_stop, from_start)
        assert second.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGHUP])
def test_reload_signals_fail_no_read(
    start_daemon: StartDaemon, tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGHUP (what admins send to reload) is a reload too, never a stop."""
    daemon = start_daemon()
    with containers(daemon, tmp_path) as boxes:
        tables = {box.name: box.mountinfo() for box in boxes}
        sent = time.monotonic()
        daemon.send(signum)
        daemon.wait_for_log(f"{signum.name}: reloaded")
        logged = time.monotonic()
        deadline = logged + TIMEOUT
        for box in boxes:
            wait_for(functools.partial(box.read_well_after, logged, 3), box.name, deadline)
        for box in boxes:
            during = box.reads_after(sent)
            assert during, box.name
            assert all(box.good(line) for _, line in during), (box.name, during)
            assert all(box.good(line) for _, line in box.reads_after(0)), box.name
            assert box.mountinfo() == tables[box.name]
    assert "reload failed" not in daemon.log()


def _remount_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("remount", *args)


def test_remount_command_fixes_orphaned_binds_and_prints_them(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Binds of another instance (another pidfile) are left to it; ``remount`` with that
    pidfile adopts them into the live mount once the dead one is detached."""
    old = start_daemon(mountpoint=tmp_path / "old", pidfile=tmp_path / "old.pid")
    with containers(old, tmp_path) as boxes:
        _kill(old)
        new = start_daemon(mountpoint=tmp_path / "new", pidfile=tmp_path / "new.pid")
        new.wait_for_log("re-attach done: ")
        # The new daemon did not take over the binds of the (dead) instance at "old".
        namespaces = {f"mnt:[{os.stat(f'/proc/{box.pid}/ns/mnt').st_ino}]" for box in boxes}
        assert all(box.bind_state() == "dead" for box in boxes)
        assert not [ns for ns in namespaces if ns in new.log()]
        subprocess.run(["fusermount3", "-u", "-z", str(old.mountpoint)], check=True)
        assert not is_mounted(old.mountpoint)

        result = _remount_cli("--pidfile", str(old.pidfile), str(new.mountpoint))
        assert result.returncode == 0, result.stderr
        expected: set[str] = set()
        for box in boxes:
            namespace = os.stat(f"/proc/{box.pid}/ns/mnt").st_ino
            # Not their copies of "old": a whole mount at another path is not ours to adopt.
            expected |= {f"fixed mnt:[{namespace}] pid {box.pid} {p}" for p in box.paths()}
        assert set(result.stdout.splitlines()) == expected, result.stdout
        assert all(box.bind_state() == "alive" for box in boxes)
        fresh = device_of(new.mountpoint)
        for box in boxes:
            devices = {e.device for e in box.mountinfo() if e.mount_point in box.paths()}
            assert devices == {fresh}, box.name
        deadline = time.monotonic() + TIMEOUT
        now = time.monotonic()
        for box in boxes:
            wait_for(functools.partial(box.read_well_after, now), box.name, deadline)

        again = _remount_cli("--pidfile", str(old.pidfile), str(new.mountpoint))
        assert (again.returncode, again.stdout) == (0, ""), again.stderr
        assert new.stop() == 0

    missing = _remount_cli(str(tmp_path / "nothing"))
    assert missing.returncode == 1
    assert "no fuse.procfs-view mount" in missing.stderr


@pytest.mark.parametrize("descriptors", [None, 120])
def test_many_namespaces_are_reattached_by_few_workers(
    start_daemon: StartDaemon, tmp_path: Path, descriptors: int | None
) -> None:
    """40 mount namespaces (more than one worker takes: VIEWS_PER_WORKER) each binding
    our files over files of their own, as containers do: after kill -9 and a new start
    every bind reads through again; also for a daemon allowed only 120 open files (16
    such views hold ~180 descriptors at once: the batch is cut to what the limit leaves;
    it used to fail every view with EMFILE and report nothing failed)."""
    if descriptors is not None and shutil.which("prlimit") is None:
        pytest.skip("needs prlimit(1)")
    from procfs_view.remount import VIEWS_PER_WORKER

    count = 40
    assert count > 2 * VIEWS_PER_WORKER
    first = start_daemon()
    targets = {name: tmp_path / name.replace("/", "-") for name in BOUND_FILES}
    for target in targets.values():
        target.write_text("")
    script = " && ".join(f"mount --bind {first.path(name)} {t}" for name, t in targets.items())
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{script} && exec sleep 300"]
    holders: list[subprocess.Popen[bytes]] = []
    try:
        holders.extend(subprocess.Popen(argv) for _ in range(count))

        def bound(pid: int) -> bool:
            entries = parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text())
            return {str(t) for t in targets.values()} <= {e.mount_point for e in entries}

        deadline = time.monotonic() + TIMEOUT
        while not all(bound(holder.pid) for holder in holders):
            assert time.monotonic() < deadline, "the namespaces did not bind our files"
            time.sleep(0.05)
        _kill(first)
        limit = () if descriptors is None else ("prlimit", f"--nofile={descriptors}")
        second = start_daemon(wrapper=limit)
        second.wait_for_log("re-attach done")
        meminfo = targets["proc/meminfo"]
        for holder in holders:
            assert Path(f"/proc/{holder.pid}/root{meminfo}").read_text().startswith("MemTotal:")
            for target in targets.values():
                os.statvfs(f"/proc/{holder.pid}/root{target}")  # ENOTCONN while dead
        done = re.search(
            r"re-attach done: (\d+) dead binds replaced \(\d+ stacked\), 0 failed", second.log()
        )
        assert done is not None, second.log()
        assert int(done.group(1)) >= count * len(targets)
        assert second.stop() == 0
    finally:
        for holder in holders:
            kill_started(holder)


# A container LXCFS's hook or webhook set up: its files bound from LXCFS's mount.
LXCFS_BINDS = ("proc/meminfo", "proc/slabinfo", "sys/devices/system/cpu")
LXCFS_CONTAINER = """
set -e
for f in $LXCFS_BINDS; do mount --bind "$LXCFS_MNT/$f" "/$f"; done
while :; do
  if out=$(busybox head -n 1 /proc/meminfo 2>&1); then echo "ok $out"; else echo "err $out"; fi
  busybox usleep 10000
done
"""


def test_a_node_switched_from_lxcfs_gets_its_containers_dead_binds_of_our_files_back(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """LXCFS stops (or dies), procfs-view starts at its mountpoint: a container's binds of
    files we serve show our view again without a restart; its binds of LXCFS's other
    paths (slabinfo, the cpu directory) stay as they were, never the host's files."""
    mountpoint = tmp_path / "lxcfs"
    mountpoint.mkdir()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.fake_lxcfs", str(mountpoint)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while "fuse.lxcfs" not in mounts_at(mountpoint):
            assert fake.poll() is None, "the fake LXCFS exited"
            assert time.monotonic() < deadline, "the fake LXCFS did not mount"
            time.sleep(0.02)
        with test_cgroup(memory_limit=96 * MIB) as cgroup:
            env = dict(os.environ, LXCFS_MNT=str(mountpoint), LXCFS_BINDS=" ".join(LXCFS_BINDS))
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", LXCFS_CONTAINER]
            process = cgroup.spawn(argv, env=env, stdout=subprocess.PIPE, text=True)
            box = Container("from-lxcfs", process, 96 * 1024, ("proc/meminfo",))
            collector = threading.Thread(target=box.collect, daemon=True)
            collector.start()
            try:
                fake_line = f"ok MemTotal:{FAKE_MEMTOTAL_KB:>15} kB"
                wait_for(
                    lambda: any(line == fake_line for _, line in box.reads_after(0)),
                    "the container to read the fake LXCFS",
                    time.monotonic() + TIMEOUT,
                )
                kill_started(fake)
                assert box.bind_state() == "dead"
                daemon = start_daemon(mountpoint=mountpoint)
                daemon.wait_for_log("re-attach done")
                started = time.monotonic()
                wait_for(
                    functools.partial(box.read_well_after, started, 3),
                    "the container to read its own limit through procfs-view",
                    started + TIMEOUT,
                )
                for path in LXCFS_BINDS[1:]:
                    with pytest.raises(OSError, match="not connected") as dead:
                        os.statvfs(f"/proc/{box.pid}/root/{path}")
                    assert dead.value.errno == errno.ENOTCONN, path
                assert f"(pid {box.pid}, lxcfs/proc/meminfo): fixed" in daemon.log()
                assert " failed: " not in daemon.log()
                assert daemon.stop() == 0
            finally:
                kill_started(process)
                collector.join(timeout=TIMEOUT)
    finally:
        kill_started(fake)
        if is_mounted(mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)


def test_a_stop_while_a_worker_hangs_in_a_namespace_leaves_no_worker_behind(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """A container binding files of a stopped (not dead) LXCFS hangs the re-attach
    worker that checks them (it is killed after WORKER_TIMEOUT); a daemon stopped
    meanwhile abandoned the thread waiting for it, and the forked worker lived on."""
    hung_mount, dead_mount = tmp_path / "hung", tmp_path / "lxcfs"
    fakes = []
    for mountpoint in (hung_mount, dead_mount):
        mountpoint.mkdir()
        fakes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.integration.fake_lxcfs", str(mountpoint)], cwd=REPO
            )
        )
    hung, dead = fakes
    holder: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while not all("fuse.lxcfs" in mounts_at(m) for m in (hung_mount, dead_mount)):
            assert time.monotonic() < deadline, "the fake LXCFSes did not mount"
            time.sleep(0.02)
        script = f"mount --bind {hung_mount}/proc/meminfo /proc/meminfo && exec sleep 60"
        holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script])
        deadline = time.monotonic() + TIMEOUT
        while "/proc/meminfo" not in {
            e.mount_point
            for e in parse_mountinfo(Path(f"/proc/{holder.pid}/mountinfo").read_text())
        }:
            assert time.monotonic() < deadline, "the holder did not bind"
            time.sleep(0.02)
        hung.send_signal(signal.SIGSTOP)  # its binds now hang whoever asks them
        subprocess.run(["umount", "-l", str(hung_mount)], check=True)  # mounted nowhere here
        kill_started(dead)  # leaves a dead LXCFS mount where the daemon starts: it adopts
        daemon = start_daemon(mountpoint=dead_mount)
        workers: set[int] = set()
        deadline = time.monotonic() + TIMEOUT
        while not workers:
            assert time.monotonic() < deadline, "no re-attach worker was forked"
            for task in Path(f"/proc/{daemon.process.pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    workers.update(int(p) for p in (task / "children").read_text().split())
            time.sleep(0.01)
        assert daemon.stop() == 0
        time.sleep(0.2)  # the SIGKILL's way through the FUSE wait
        running = {}  # a killed one may stay a zombie until init, its new parent, reaps it
        for pid in workers:
            with contextlib.suppress(FileNotFoundError):
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    running[pid] = state
        assert not running, (running, daemon.log())
    finally:
        if holder is not None:
            kill_started(holder)
        hung.send_signal(signal.SIGCONT)
        kill_started(hung)
        kill_started(dead)
        for mountpoint in (hung_mount, dead_mount):
            if is_mounted(mountpoint):
                subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
