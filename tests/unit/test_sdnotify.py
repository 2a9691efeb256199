"""sd_notify(3) and sd_listen_fds(3) as the daemon speaks them (no systemd needed)."""

from __future__ import annotations

import array
import os
import socket
import subprocess
import sys
from pathlib import Path

from procfs_view import sdnotify


def test_store_sends_the_descriptor_with_its_name(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        read_end, write_end = os.pipe()
        try:
            environ = {"NOTIFY_SOCKET": address}
            assert sdnotify.notify("FDSTORE=1\nFDNAME=fuse", [read_end], environ)
            message, ancillary, _, _ = listener.recvmsg(4096, socket.CMSG_SPACE(4))
            assert message == b"FDSTORE=1\nFDNAME=fuse"
            ((_, _, data),) = ancillary
            (received,) = array.array("i", data)
            os.write(write_end, b"x")
            assert os.read(received, 1) == b"x"  # the same pipe
            os.close(received)
        finally:
            os.close(read_end)
            os.close(write_end)


def test_without_a_notification_socket_nothing_is_sent() -> None:
    assert not sdnotify.notify("READY=1", environ={})
    assert not sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": "relative/path"})
    assert not sdnotify.store_wanted(True, environ={})


def test_the_store_is_used_when_asked_or_offered() -> None:
    under_systemd = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    assert sdnotify.store_wanted(True, dict(under_systemd))
    assert not sdnotify.store_wanted(False, dict(under_systemd))
    assert sdnotify.store_wanted(False, {**under_systemd, "FDSTORE": "1"})
    assert not sdnotify.store_wanted(False, {**under_systemd, "FDSTORE": "0"})
    assert not sdnotify.store_wanted(False, {**under_systemd, "FDSTORE": "lots"})


_LISTEN = """
import os, sys
from procfs_view import sdnotify
read_end, write_end = os.pipe()
for number, fd in ((3, read_end), (4, write_end)):
    if fd != number:
        os.dup2(fd, number)
os.set_inheritable(3, True)
os.environ.update(LISTEN_PID=sys.argv[1] or str(os.getpid()), LISTEN_FDS="2",
                  LISTEN_FDNAMES="fuse:other")
passed = sdnotify.passed_fds()
print(sorted(passed.items()), os.get_inheritable(3), "LISTEN_FDS" in os.environ)
"""


def listen(pid: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _LISTEN, pid], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_passed_descriptors_are_found_by_name_and_kept_from_children() -> None:
    assert listen("") == "[('fuse', [3]), ('other', [4])] False False"


def test_descriptors_passed_to_another_process_are_not_ours() -> None:
    assert listen("1") == "[] True False"


def test_only_a_live_fuse_device_is_a_connection() -> None:
    read_end, write_end = os.pipe()
    try:
        assert not sdnotify.is_live_fuse_connection(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert not sdnotify.is_live_fuse_connection(read_end)  # closed
    assert read_end not in sdnotify.fuse_descriptors()
