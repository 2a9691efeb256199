"""What a caller reads through descriptors the service keeps open (fileio.OpenFiles), on
real cgroups (v1 here, v2 in the VM): a limit written between two reads shows at the next
one, a parent's limit binds its child, and a cgroup removed and made again under the same
name is read afresh, never from the old one's descriptors."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procfs_view.service import ViewService
from tests.cgroups import TestCgroup, test_cgroup

pytestmark = [pytest.mark.root, pytest.mark.cgroup2vm, pytest.mark.usefixtures("real_cgroups")]

MIB = 1024 * 1024


def mem_total_kb(service: ViewService, pid: int) -> int:
    first_line = service.answer("proc/meminfo", pid).split(b"\n", 1)[0]
    assert first_line.startswith(b"MemTotal:"), first_line
    return int(first_line.split()[1])


def limit_file(directory: Path) -> Path:
    v1 = (directory / "memory.limit_in_bytes").exists()
    return directory / ("memory.limit_in_bytes" if v1 else "memory.max")


@contextlib.contextmanager
def child(parent: TestCgroup, name: str, limit: int) -> Iterator[subprocess.Popen[bytes]]:
    """A memory cgroup ``name`` inside ``parent``'s, limited to ``limit``, holding one
    sleeping process (yielded); the process is killed and the cgroup removed on exit."""
    memory = parent.directory("memory")
    if parent.version == 2:
        (memory / "cgroup.subtree_control").write_text("+memory")
    directory = memory / name
    directory.mkdir()
    sleeper: subprocess.Popen[bytes] | None = None
    try:
        limit_file(directory).write_text(str(limit))
        procs = str(directory / "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))

        sleeper = subprocess.Popen(["sleep", "120"], preexec_fn=join)
        yield sleeper
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        for _attempt in range(100):
            try:
                directory.rmdir()
                break
            except OSError:
                if not directory.exists():
                    break
                time.sleep(0.05)


def test_a_limit_written_between_two_reads_shows_at_the_next() -> None:
    service = ViewService(cache_ttl=0)
    with test_cgroup(memory_limit=256 * MIB) as cgroup:
        sleeper = cgroup.spawn(["sleep", "120"])
        assert mem_total_kb(service, sleeper.pid) == 256 * 1024
        assert len(service.files) > 0  # its cgroup files are now kept open
        limit_file(cgroup.directory("memory")).write_text(str(200 * MIB))
        assert mem_total_kb(service, sleeper.pid) == 200 * 1024
    service.close()


def test_a_parents_limit_binds_its_child() -> None:
    service = ViewService(cache_ttl=0)
    with (
        test_cgroup(memory_limit=256 * MIB) as parent,
        child(parent, "inner", 512 * MIB) as sleeper,
    ):
        assert mem_total_kb(service, sleeper.pid) == 256 * 1024
        limit_file(parent.directory("memory")).write_text(str(192 * MIB))
        assert mem_total_kb(service, sleeper.pid) == 192 * 1024
        limit_file(parent.directory("memory") / "inner").write_text(str(128 * MIB))
        assert mem_total_kb(service, sleeper.pid) == 128 * 1024
    service.close()


def test_a_cgroup_made_again_under_the_same_name_is_read_afresh() -> None:
    service = ViewService(cache_ttl=0)
    with test_cgroup(memory_limit=1024 * MIB) as parent:
        with child(parent, "same-name", 256 * MIB) as first:
            assert mem_total_kb(service, first.pid) == 256 * 1024
        with child(parent, "same-name", 384 * MIB) as second:
            assert mem_total_kb(service, second.pid) == 384 * 1024
            assert mem_total_kb(service, second.pid) == 384 * 1024
    service.close()
