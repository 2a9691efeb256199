"""The mounted tree: layout, modes, read-only, ENOENT, and how /proc/mounts shows it."""

from __future__ import annotations

import errno
import functools
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from procfs_view.service import ViewService
from tests.integration.helpers import FSTYPE, Daemon

pytestmark = pytest.mark.fuse


def test_tree_lists_every_served_path(mounted: Daemon) -> None:
    served = set(ViewService().served_paths())
    found = {
        str(Path(root, name).relative_to(mounted.mountpoint))
        for root, _dirs, files in os.walk(mounted.mountpoint)
        for name in files
    }
    assert found == served
    assert {"proc/meminfo", "sys/devices/system/cpu/online"} <= found


def test_ls_a_lists_dot_and_dot_dot_first(mounted: Daemon) -> None:
    """As in /proc and LXCFS: ``ls -a`` and readdir(3) callers expect them."""
    listing = subprocess.run(
        ["ls", "-a1", str(mounted.mountpoint / "proc")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing[:2] == [".", ".."]
    assert "meminfo" in listing[2:]
    assert set(os.listdir(mounted.mountpoint)) == {"proc", "sys"}  # Python leaves them out
    assert os.stat(mounted.mountpoint / "proc" / "..").st_ino == os.stat(mounted.mountpoint).st_ino


def test_modes_files_0444_directories_0555(mounted: Daemon) -> None:
    for root, dirs, files in os.walk(mounted.mountpoint):
        for name in dirs:
            mode = os.stat(Path(root, name)).st_mode
            assert stat.S_ISDIR(mode)
            assert stat.S_IMODE(mode) == 0o555, name
        for name in files:
            info = os.stat(Path(root, name))
            assert stat.S_ISREG(info.st_mode)
            assert stat.S_IMODE(info.st_mode) == 0o444, name
            assert info.st_size == 0, name  # as procfs and sysfs: readers read to EOF


def _errno_of(action: Callable[[], object]) -> int:
    try:
        action()
    except OSError as error:
        return error.errno or 0
    raise AssertionError("no error")


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda m: os.open(m / "proc/meminfo", os.O_WRONLY), id="open-write"),
        pytest.param(lambda m: os.open(m / "proc/meminfo", os.O_RDWR), id="open-rdwr"),
        pytest.param(lambda m: os.open(m / "proc/meminfo", os.O_RDONLY | os.O_TRUNC), id="trunc"),
        pytest.param(lambda m: os.open(m / "proc/new", os.O_CREAT | os.O_WRONLY), id="create"),
        pytest.param(lambda m: os.mkdir(m / "proc/dir"), id="mkdir"),
        pytest.param(lambda m: os.unlink(m / "proc/meminfo"), id="unlink"),
        pytest.param(lambda m: os.rmdir(m / "sys"), id="rmdir"),
        pytest.param(lambda m: os.rename(m / "proc/stat", m / "proc/stat2"), id="rename"),
        pytest.param(lambda m: os.chmod(m / "proc/stat", 0o666), id="chmod"),
        pytest.param(lambda m: os.truncate(m / "proc/stat", 0), id="truncate"),
        pytest.param(lambda m: os.symlink("x", m / "proc/link"), id="symlink"),
        pytest.param(lambda m: os.link(m / "proc/stat", m / "proc/hard"), id="link"),
    ],
)
def test_changes_are_refused(mounted: Daemon, action: Callable[[Path], object]) -> None:
    assert _errno_of(lambda: action(mounted.mountpoint)) in (errno.EROFS, errno.EACCES)


def test_unknown_names_are_enoent(mounted: Daemon) -> None:
    for relative in ("nope", "proc/nope", "proc/meminfo2", "sys/devices/nope"):
        assert _errno_of(functools.partial(os.stat, mounted.path(relative))) == errno.ENOENT


def test_proc_mounts_shows_fuse_procfs_view_ro_allow_other(mounted: Daemon) -> None:
    lines = [
        line.split()
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1] == str(mounted.mountpoint)
    ]
    assert len(lines) == 1
    source, _target, fstype, options = lines[0][:4]
    assert (source, fstype) == ("procfs-view", FSTYPE)
    assert "ro" in options.split(",")
    assert "allow_other" in options.split(",")
