"""``/proc/<pid>/mountinfo`` (proc(5)), parsed once for everyone who needs mounts.

Cgroup discovery (which hierarchies, mounted where), the daemon (what is mounted at its
mountpoint), the descriptor pool (which filesystem a kept file is on) and the remounter
(every container's binds of our files) all read this one format; this is its one parser.

A line is ``36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw,errors=continue``:
mount id, parent id, ``major:minor``, the root of the mount within its filesystem, the
mount point, per-mount options, optional fields, ``-``, filesystem type, source, super
options. Paths have space, tab, newline and backslash escaped as ``\\ooo``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FSNAME",
    "FSTYPE",
    "LXCFS_FSNAME",
    "LXCFS_FSTYPE",
    "MountEntry",
    "mounts_at",
    "parse_mountinfo",
    "read_mountinfo",
    "resolve_mountpoint",
    "unescape",
    "visible",
]

# Our mounts' source and type in mountinfo. Defined here, not in the daemon, so that
# ``procfs-view check`` (a probe run every few seconds) loads only this module.
FSNAME = "procfs-view"
FSTYPE = f"fuse.{FSNAME}"
# LXCFS's, which we replace (its dead mounts, its containers' dead binds).
LXCFS_FSNAME = "lxcfs"
LXCFS_FSTYPE = f"fuse.{LXCFS_FSNAME}"

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape(field_text: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash in paths as ``\ooo``."""
    if "\\" not in field_text:
        return field_text
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field_text)


@dataclass(frozen=True)
class MountEntry:
    """One line of a mountinfo file, paths unescaped."""

    mount_id: int
    parent_id: int
    device: tuple[int, int]
    root: str
    mount_point: str
    options: frozenset[str]
    fstype: str
    source: str
    super_options: frozenset[str] = frozenset()


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every well-formed line of a mountinfo file; malformed ones are skipped."""
    entries: list[MountEntry] = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields = before.split()
        tail = after.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        major, colon, minor = fields[2].partition(":")
        if not colon:
            continue
        try:
            entry = MountEntry(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                device=(int(major), int(minor)),
                root=unescape(fields[3]),
                mount_point=unescape(fields[4]),
                options=frozenset(fields[5].split(",")),
                fstype=tail[0],
                source=unescape(tail[1]),
                super_options=frozenset(tail[2].split(",")) if len(tail) > 2 else frozenset(),
            )
        except ValueError:
            continue
        entries.append(entry)
    return entries


def visible(entries: list[MountEntry]) -> list[MountEntry]:
    """The entries a path lookup can reach, in their order: not those a mount stacked on
    them hides.

    A mount stacked on the same mount point (its parent is the mount it covers) hides that
    mount and everything mounted inside it, as when a container bind-mounts the host's
    /sys/fs/cgroup over the one its runtime made (the DaemonSet does): both are listed, and
    only the top one is what the path shows. A mount whose parent is not listed (the root of
    a namespace, a chroot) counts as reachable. (A later mount on one of its ancestor
    directories, at another mount point of the same parent, also hides it; that is not
    told here: no runtime mounts over /sys/fs that way.)"""
    by_id = {entry.mount_id: entry for entry in entries}
    covered = {
        entry.parent_id
        for entry in entries
        if (parent := by_id.get(entry.parent_id)) is not None
        and parent is not entry
        and parent.mount_point == entry.mount_point
    }

    def is_reachable(entry: MountEntry) -> bool:
        if entry.mount_id in covered:
            return False
        child = entry
        for _ in range(len(entries)):  # a malformed file's parent cycle ends the walk
            parent = by_id.get(child.parent_id)
            if parent is None or parent is child:
                return True
            # Mounted inside a covered mount, not on top of it: hidden with it.
            if parent.mount_point != child.mount_point and parent.mount_id in covered:
                return False
            child = parent
        return True

    return [entry for entry in entries if is_reachable(entry)]


def read_mountinfo(path: Path | str) -> list[MountEntry]:
    """Parse a mountinfo file; paths that are not UTF-8 survive as surrogate escapes.

    Raises:
        OSError: the file cannot be read (the process exited, no /proc, ...).
    """
    with open(path, "rb") as handle:
        return parse_mountinfo(handle.read().decode("utf-8", "surrogateescape"))


def mounts_at(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Filesystem types mounted at ``path``, bottom first (the last one is visible)."""
    target = str(path)
    return [entry.fstype for entry in read_mountinfo(mountinfo) if entry.mount_point == target]


def resolve_mountpoint(path: Path) -> Path:
    """Absolute, symlinks resolved in the parent only: stat on a dead mount fails.

    This is the path mountinfo shows for our mount, so everything that looks it up there
    (the daemon, ``check``) resolves it here.
    """
    absolute = Path(os.path.abspath(path))
    if absolute == absolute.parent:
        return absolute
    return Path(os.path.realpath(absolute.parent)) / absolute.name
