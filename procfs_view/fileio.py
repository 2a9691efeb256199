"""Whole-file reads for the request path: one ``open``/``read``.../``close`` on a str path.

pathlib costs tens of microseconds per path built and per ``open`` (it re-parses the path
each time); a served file needs up to a dozen small files, so the hot path avoids it.
"""

from __future__ import annotations

import os

from procfs_view.errors import CgroupDataError

#: Reads stop here: no /proc or cgroup file we read is anywhere near it; garbage that is
#: bigger is cut off (and then fails to parse) instead of exhausting memory.
READ_LIMIT = 1 << 20
_CHUNK = 65536


def read_bytes(path: str, limit: int = READ_LIMIT) -> bytes:
    """The content of ``path``, read until EOF (or ``limit`` bytes).

    Raises:
        OSError: as ``os.open``/``os.read`` do (ENOENT, ESRCH, ENODEV, EACCES, ...).
    """
    # O_NONBLOCK: a FIFO (or tty) planted where a file belongs must not park the daemon
    # (and with it every container's reads) in open() or read(); regular, proc, sysfs and
    # cgroup files ignore the flag.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        data = os.read(fd, _CHUNK)
        if not data:
            return data
        chunks = [data]
        size = len(data)
        while size < limit:
            chunk = os.read(fd, min(_CHUNK, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)[:limit]
    finally:
        os.close(fd)


def read_text(path: str, limit: int = READ_LIMIT, errors: str = "strict") -> str:
    """``read_bytes`` decoded as UTF-8.

    Raises:
        CgroupDataError: the content is not UTF-8 (with ``errors="strict"``); pass
            ``"surrogateescape"`` for text holding file names, which are bytes.
    """
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError:
        raise CgroupDataError(f"{path}: not UTF-8 text") from None
