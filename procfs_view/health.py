"""``procfs-view check``: is the mount alive? For liveness probes and operators.

The read runs in a daemon thread so a hung daemon (a read that never answers) cannot
hang the probe: after the timeout we report and exit, and the process exit kills the
thread (FUSE waits are killable).
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from procfs_view.mountinfo import FSTYPE, mounts_at, resolve_mountpoint

DEFAULT_TIMEOUT = 2.0
PROBE_FILE = "proc/meminfo"


def _read(path: Path, result: list[bytes | OSError]) -> None:
    try:
        with path.open("rb") as file:
            result.append(file.read(4096))
    except OSError as error:
        result.append(error)


def probe(mountpoint: Path, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """None when ``mountpoint/proc/meminfo`` answers within ``timeout``; else why not.

    The path is resolved as the daemon resolves its mountpoint (symlinks in the parent),
    so a mount reached through a symlinked directory is found in mountinfo.
    """
    absolute = resolve_mountpoint(mountpoint)
    fstypes = mounts_at(absolute)
    if not fstypes:
        if not os.path.lexists(absolute):
            return f"{absolute} does not exist"
        return f"{absolute} is not mounted (no procfs-view mount there)"
    if fstypes[-1] != FSTYPE:
        return f"{absolute} is a {fstypes[-1]} mount, not procfs-view"
    target = absolute / PROBE_FILE
    result: list[bytes | OSError] = []
    reader = threading.Thread(target=_read, args=(target, result), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        return f"{target}: no answer within {timeout:g} s (the daemon is hung)"
    outcome = result[0]
    if isinstance(outcome, OSError):
        if outcome.errno == errno.ENOTCONN:
            return f"{absolute} is a dead mount (its daemon died): {outcome.strerror}"
        return f"{target}: {outcome.strerror or outcome}"
    if not outcome.startswith(b"MemTotal:"):
        return f"{target}: unexpected content {outcome[:40]!r}"
    return None
