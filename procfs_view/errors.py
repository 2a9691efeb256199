"""Domain errors raised by the reading layers and views, mapped to answers at one boundary."""

from __future__ import annotations


class ProcfsViewError(Exception):
    """Base of every error this package raises on purpose."""


class ProcessGone(ProcfsViewError):
    """The caller exited (or never existed) before we could identify its cgroup."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"process {pid} does not exist (it may have exited)")
        self.pid = pid


class CgroupUnavailable(ProcfsViewError):
    """A cgroup file we need is missing, unreadable or vanished (cgroup removed mid-read)."""


class CgroupDataError(ProcfsViewError):
    """A cgroup or /proc file holds content we cannot parse (garbage, truncated, unknown)."""


class ServeHost(ProcfsViewError):
    """Not an error: the caller sees the whole host (host cgroup, host pid namespace, option off).

    Raised by collectors so the boundary answers with the host file without logging.
    """
