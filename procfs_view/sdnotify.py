"""systemd's notification protocol (sd_notify(3)) and its file descriptor store.

The store is what lets the mount outlive the daemon: the daemon hands systemd a duplicate
of its ``/dev/fuse`` descriptor, and a FUSE connection lives as long as any process holds
one. When the daemon dies (a crash, SIGKILL, a restart) the kernel keeps the mount, every
container's binds and every open file; their reads wait, and systemd passes the
descriptor to the next daemon (sd_listen_fds(3)), which answers them. systemd keeps stored
descriptors while the unit is running or restarting and closes them when it is stopped
(which then ends the connection, as before). Only with ``FileDescriptorStoreMax=`` >= 1 in
the unit (the shipped one sets it); nothing here needs libsystemd.
"""

from __future__ import annotations

import array
import logging
import os
import select
import socket
import stat
from collections.abc import MutableMapping, Sequence

log = logging.getLogger(__name__)

#: The name our FUSE descriptor is stored under (FDNAME=).
FUSE_FD_NAME = "fuse"
#: sd_listen_fds(3): passed descriptors start here.
LISTEN_FDS_START = 3
#: /dev/fuse's device number (major 10, minor 229: Documentation/admin-guide/devices.txt).
FUSE_DEVICE = os.makedev(10, 229)


def _address(environ: MutableMapping[str, str]) -> str | None:
    address = environ.get("NOTIFY_SOCKET", "")
    if not address.startswith(("/", "@")):
        return None
    return "\0" + address[1:] if address.startswith("@") else address


def notify(
    state: str,
    fds: Sequence[int] = (),
    environ: MutableMapping[str, str] = os.environ,
) -> bool:
    """Tell systemd ``state`` (with ``fds`` attached) when it started us with
    Type=notify: a datagram to $NOTIFY_SOCKET ("@..." is an abstract socket). False when
    there is no such socket or the send fails (logged): the daemon serves either way."""
    address = _address(environ)
    if address is None:
        return False
    ancillary = []
    if fds:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes()))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendmsg([state.encode()], ancillary, 0, address)
    except OSError as exc:
        log.warning("cannot notify systemd (%s) at %s: %s", state.split("\n")[0], address, exc)
        return False
    return True


def store_wanted(requested: bool, environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether to keep the connection in systemd's store: asked for (``--fd-store``) or
    offered by systemd (it sets $FDSTORE to FileDescriptorStoreMax= since v254), and
    there is a notification socket to hand it over."""
    if _address(environ) is None:
        return False
    if requested:
        return True
    try:
        return int(environ.get("FDSTORE", "0")) > 0
    except ValueError:
        return False


def store(fd: int, name: str = FUSE_FD_NAME) -> bool:
    """Hand systemd a duplicate of ``fd`` to keep under ``name``."""
    return notify(f"FDSTORE=1\nFDNAME={name}", [fd])


def unstore(name: str = FUSE_FD_NAME) -> bool:
    """Ask systemd to close what it keeps under ``name``."""
    return notify(f"FDSTOREREMOVE=1\nFDNAME={name}")


def passed_fds(environ: MutableMapping[str, str] = os.environ) -> dict[str, list[int]]:
    """The descriptors systemd passed us (sd_listen_fds_with_names(3)) by name, made
    close-on-exec, and the variables removed so that no child takes them for its own."""
    pid = environ.pop("LISTEN_PID", None)
    count_text = environ.pop("LISTEN_FDS", None)
    names_text = environ.pop("LISTEN_FDNAMES", None)
    if pid != str(os.getpid()) or count_text is None:
        return {}
    try:
        count = int(count_text)
    except ValueError:
        log.warning("ignoring LISTEN_FDS=%r: not a number", count_text)
        return {}
    names = names_text.split(":") if names_text else []
    passed: dict[str, list[int]] = {}
    for index in range(max(0, count)):
        fd = LISTEN_FDS_START + index
        try:
            os.set_inheritable(fd, False)
        except OSError:
            continue  # not open after all
        name = names[index] if index < len(names) else "unknown"
        passed.setdefault(name, []).append(fd)
    return passed


def _is_fuse_device(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == FUSE_DEVICE


def is_live_fuse_connection(fd: int) -> bool:
    """Whether ``fd`` is a ``/dev/fuse`` descriptor whose connection is still up (an
    aborted or unmounted one polls as an error)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    if not _is_fuse_device(info):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    events = poller.poll(0)
    return not any(mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, mask in events)


def fuse_descriptors(fd_dir: str = "/proc/self/fd") -> list[int]:
    """Our open ``/dev/fuse`` descriptors (pyfuse3 does not tell which one libfuse uses)."""
    found: list[int] = []
    for entry in os.listdir(fd_dir):
        try:
            fd = int(entry)
            info = os.fstat(fd)
        except (ValueError, OSError):
            continue
        if _is_fuse_device(info):
            found.append(fd)
    return found
