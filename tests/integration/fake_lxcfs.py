"""A stand-in for LXCFS in tests: a FUSE filesystem that mountinfo shows as LXCFS's
(``fuse.lxcfs``, source ``lxcfs``) and serves a few of its paths with fixed content, so a
test can kill it and check what procfs-view does with the binds it leaves dead. CI has no
LXCFS (installing Debian's would start it at /var/lib/lxcfs).

Run: ``python -m tests.integration.fake_lxcfs MOUNTPOINT`` (foreground; SIGTERM stops it).
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

#: What it serves; a directory is a path with children.
FILES = {
    "proc/meminfo": b"MemTotal:              4 kB\n",
    "proc/slabinfo": b"slabinfo - version: 2.1\n",
    "sys/devices/system/cpu/online": b"0\n",
}
FAKE_MEMTOTAL_KB = 4


class FakeLxcfs(pyfuse3.Operations):
    def __init__(self) -> None:
        super().__init__()
        self.paths: dict[int, str] = {pyfuse3.ROOT_INODE: ""}
        for path in FILES:
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                prefix = "/".join(parts[:depth])
                if prefix not in self.paths.values():
                    self.paths[len(self.paths) + pyfuse3.ROOT_INODE] = prefix
        self.inodes = {path: inode for inode, path in self.paths.items()}

    def _attributes(self, inode: int) -> pyfuse3.EntryAttributes:
        attributes = pyfuse3.EntryAttributes()
        attributes.st_ino = pyfuse3.InodeT(inode)
        path = self.paths[inode]
        attributes.st_mode = (stat.S_IFREG | 0o444) if path in FILES else (stat.S_IFDIR | 0o555)
        attributes.st_nlink = 1
        return attributes

    async def getattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if inode not in self.paths:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(inode)

    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self.paths.get(parent_inode)
        if parent is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        path = "/".join(filter(None, [parent, name.decode()]))
        inode = self.inodes.get(path)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(inode)

    async def opendir(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileHandleT:
        return pyfuse3.FileHandleT(inode)

    async def readdir(
        self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
    ) -> None:
        prefix = self.paths[fh]
        children = sorted(
            (path, inode)
            for path, inode in self.inodes.items()
            if path and os.path.dirname(path) == prefix
        )
        for index in range(start_id, len(children)):
            path, inode = children[index]
            name = os.path.basename(path).encode()
            if not pyfuse3.readdir_reply(token, name, self._attributes(inode), index + 1):
                break

    async def open(
        self, inode: pyfuse3.InodeT, flags: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        if self.paths.get(inode) not in FILES:
            raise pyfuse3.FUSEError(errno.EISDIR)
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(inode), direct_io=True)

    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        return FILES[self.paths[fh]][off : off + size]


def main() -> None:
    options = {"fsname=lxcfs", "subtype=lxcfs", "allow_other", "ro"}
    pyfuse3.init(FakeLxcfs(), sys.argv[1], options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
