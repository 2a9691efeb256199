"""A leaner trio for pyfuse3's request loop: no scheduler round trip between requests.

pyfuse3's worker loop (``_session_loop``) does, per FUSE request::

    async with trio.Lock():                       # an uncontended acquire still checkpoints
        await trio.lowlevel.wait_readable(fd)     # always parks, even if a request waits
    fuse_session_receive_buf(...); handler()

Each park is a full pass of trio's run loop (epoll re-arm, epoll_wait, reschedule), and
an open+read+close is four requests (open, read, read at EOF, release), each of them a
sleep and a wake-up of the daemon's thread. On a VM a wake-up of an idle vCPU is an
inter-processor interrupt through the hypervisor: tens of microseconds, more than the
daemon's whole work on a cached file.

pyfuse3 reaches trio only through its module attribute ``pyfuse3.trio`` (that is how
``pyfuse3.asyncio.enable()`` swaps in asyncio), so ``installed()`` points it at this
module's namespace for the duration of ``pyfuse3.main``:

- ``Lock``: takes an unheld lock without a checkpoint (waiters park as usual), but for
  one every ``FAST_PATH_LIMIT`` requests;
- ``lowlevel.wait_readable``: returns at once when a request is already queued on the
  FUSE fd (a zero-timeout ``poll``); otherwise it *busy-polls* for up to ``busy_poll``
  seconds (``sched_yield`` between polls, so a reader on the same CPU runs), because a
  reader in the middle of open/read/close sends its next request within microseconds;
  only then does it park in trio as before. After a ``release`` (``burst_ended()``) the
  next request is not implied, so that spin is skipped, with exponential back-off, while
  it keeps timing out: a process that reads one file now and then costs no spin at all.
  Every ``FAST_PATH_LIMIT`` requests one real checkpoint (in ``Lock``, before pyfuse3
  looks at its exit flag) lets the signal handler and the loadavg sampler run, so a flood
  of reads cannot starve SIGTERM, and cancellation is still delivered. With nothing to
  read nothing spins: an idle daemon uses no CPU.

Everything else is trio's own. Measured on the benchmark VM (benchmarks/README.md):
open+read+close of a cached file 166 us with the zero-timeout poll alone, 57 us with the
50 us busy-poll; a minimal pyfuse3 filesystem went from 132 us (stock loop) to 46 us
(lock and poll) on the earlier Xeon VM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pyfuse3
import trio

from procfs_view.options import DEFAULT_BUSY_POLL

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BUSY_POLL",
    "FAST_PATH_LIMIT",
    "Adoption",
    "FastLock",
    "adopt",
    "burst_ended",
    "can_adopt",
    "forget_adoption",
    "installed",
    "wait_readable",
]

#: Requests served back to back without yielding to trio's scheduler.
FAST_PATH_LIMIT = 16
#: After this many timed-out spins following a release in a row, back-off is at its most:
#: one spin is tried per 64 releases.
_MAX_BACKOFF = 64


class FastLock:
    """``trio.Lock`` as pyfuse3 uses it (``async with``), minus the checkpoint on an
    uncontended acquire but for the bounded one (``FAST_PATH_LIMIT``). Waiters are woken in
    order through a ParkingLot."""

    def __init__(self) -> None:
        self._held = False
        self._waiters = trio.lowlevel.ParkingLot()

    async def __aenter__(self) -> None:
        readiness = _readiness
        if readiness.streak >= FAST_PATH_LIMIT:
            # The bounded yield to trio (signals, the loadavg sampler) happens here, before
            # pyfuse3 checks its exit flag under this lock: a SIGTERM handled in it is seen
            # at once. Inside wait_readable it came after that check, and with no request
            # queued the loop then parked until some container happened to read.
            readiness.streak = 0
            await trio.lowlevel.checkpoint()
        while self._held:
            await self._waiters.park()
        self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False
        self._waiters.unpark()


class _Readiness:
    """Per-fd zero-timeout poll objects, the busy-poll window, and the bookkeeping that
    bounds both the requests served without a checkpoint and the spins that do not pay."""

    def __init__(self) -> None:
        self.pollers: dict[int, select.poll] = {}
        self.streak = 0
        self.busy_poll = 0.0
        self.after_release = False
        self.backoff = 0
        self.skip = 0

    def reset(self, busy_poll: float) -> None:
        self.pollers.clear()
        self.streak = 0
        self.busy_poll = busy_poll
        self.after_release = False
        self.backoff = self.skip = 0

    def poller(self, fd: int) -> select.poll:
        poller = self.pollers.get(fd)
        if poller is None:
            poller = self.pollers[fd] = select.poll()
            poller.register(fd, select.POLLIN)
        return poller

    def ready(self, fd: int) -> bool:
        return bool(self.poller(fd).poll(0))

    def spin(self, fd: int, after_release: bool = False) -> bool:
        """Busy-poll ``fd`` for up to the window; True when it became readable. After a
        release, only while such spins pay off (exponential back-off)."""
        if self.busy_poll <= 0:
            return False
        if not after_release:
            return self._spin(fd)
        if self.skip > 0:
            self.skip -= 1
            return False
        readable = self._spin(fd)
        self.backoff = 0 if readable else min(_MAX_BACKOFF, max(1, 2 * self.backoff))
        self.skip = self.backoff
        return readable

    def _spin(self, fd: int) -> bool:
        poller = self.poller(fd)
        deadline = time.perf_counter() + self.busy_poll
        while True:
            os.sched_yield()
            if poller.poll(0):
                return True
            if time.perf_counter() >= deadline:
                return False


_readiness = _Readiness()


def burst_ended() -> None:
    """Tell the loop that the request just served ends a burst (a ``release``): the next
    request is not implied, so busy-poll for it only while that has been paying off."""
    _readiness.after_release = True


async def wait_readable(fd: int) -> None:
    """``trio.lowlevel.wait_readable`` that skips the park when ``fd`` is readable now or
    becomes readable within the busy-poll window."""
    global _adoption
    if _adoption is not None and _adoption.advance(fd):
        _adoption = None  # swapped in: nothing more to do per request
    readiness = _readiness
    after_release, readiness.after_release = readiness.after_release, False
    if readiness.ready(fd):
        if after_release:  # a request followed the release at once: spins there pay
            readiness.backoff = readiness.skip = 0
        readiness.streak += 1
        return
    if readiness.spin(fd, after_release):
        readiness.streak += 1
        return
    readiness.streak = 0
    await trio.lowlevel.wait_readable(fd)


#: FUSE_INIT (include/uapi/linux/fuse.h), and the capability flags a kernel offers
#: in it (bits 0-25 but the obsolete FILE_OPS): libfuse derives its buffer size
#: (FUSE_MAX_PAGES) and reply formats from them, and its reads must be as large as the
#: kernel negotiated with our predecessor, or the kernel refuses them (EINVAL).
_FUSE_INIT = 26
_OFFERED_FLAGS = sum(1 << bit for bit in range(26) if bit != 2)
_PROTOCOL = (7, 38)
#: FUSE_NOTIFY_RESEND (Linux 6.9): the kernel queues again the requests a dead daemon
#: had read but not answered, so their readers do not wait forever.
_FUSE_NOTIFY_RESEND = 7
#: Far above the kernel's request ids (a counter from 0): ours can never be one of them.
_FAKE_UNIQUE = 1 << 62


class Adoption:
    """Serve a FUSE connection an earlier daemon mounted and initialised (its descriptor
    kept by systemd's file descriptor store), so open files and binds in containers live
    on.

    libfuse answers every request before a FUSE_INIT with EIO, and the kernel sends INIT
    once per connection. So libfuse gets the connection as ``/dev/fd/N`` where N is
    first a socket carrying one INIT made here, with the flags a kernel offers; once
    libfuse has answered it (the answer stays in the socket), the real descriptor is
    ``dup2``-ed over N, the kernel is asked to resend what the dead daemon left
    unanswered, and libfuse reads the kernel's requests from then on.
    """

    def __init__(self, connection: int) -> None:
        self.connection = connection
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._libfuse_end = ours
        self._our_end = theirs
        self._number = ours.fileno()
        #: Whether the connection has been swapped in (libfuse answered the INIT).
        self.done = False
        major, minor = _PROTOCOL
        body = struct.pack("=IIII", major, minor, 131072, _OFFERED_FLAGS) + bytes(48)
        header = struct.pack("=IIQQIIII", 40 + len(body), _FUSE_INIT, _FAKE_UNIQUE, 0, 0, 0, 0, 0)
        theirs.send(header + body)

    @property
    def mountpoint(self) -> str:
        """What to give ``pyfuse3.init`` for a mountpoint: libfuse then uses descriptor N
        and mounts nothing."""
        return f"/dev/fd/{self._number}"

    def advance(self, fd: int) -> bool:
        """Called before every wait for a request until it returns True: swaps the
        connection in once libfuse has answered the INIT."""
        if self.done:
            return True
        if fd != self._number:
            return False
        try:
            self._our_end.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False  # the INIT is still to be read
        os.dup2(self.connection, fd, inheritable=False)
        self.close()
        self.done = True
        resent = resend_unanswered(fd)
        _readiness.pollers.pop(fd, None)
        log.info(
            "serving the FUSE connection of the previous daemon%s",
            "" if resent else " (this kernel cannot resend what it left unanswered)",
        )
        return True

    def close(self) -> None:
        """Drop what is not libfuse's (at the swap, or when the adoption is abandoned)."""
        self._our_end.close()
        self._libfuse_end.detach()  # libfuse owns the number N now
        if self.connection >= 0:
            os.close(self.connection)
            self.connection = -1


def resend_unanswered(fd: int) -> bool:
    """Ask the kernel to queue again the requests read but never answered on this
    connection (a daemon killed mid-request). False on kernels before 6.9."""
    try:
        os.write(fd, struct.pack("=IiQ", 16, _FUSE_NOTIFY_RESEND, 0))
    except OSError:
        return False
    return True


_adoption: Adoption | None = None


def adopt(connection: int) -> Adoption:
    """Prepare to serve ``connection`` (see Adoption); pyfuse3.init must be given its
    ``mountpoint`` next, and ``installed()`` run the loop."""
    global _adoption
    _adoption = Adoption(connection)
    return _adoption


def can_adopt() -> bool:
    """Whether the swap can happen: it is done in ``wait_readable``, which pyfuse3 calls
    only through the ``trio`` attribute ``installed()`` overlays."""
    return getattr(pyfuse3, "trio", None) is trio


def forget_adoption() -> None:
    """Done with the adopted connection: the loop has ended (or never began), so one not
    swapped in yet is dropped."""
    global _adoption
    if _adoption is not None and not _adoption.done:
        _adoption.close()
    _adoption = None


class _Overlay:
    """``base`` with a few attributes replaced; anything else pyfuse3 may use (in this or
    a later version) still resolves to trio's own."""

    def __init__(self, base: Any, **overrides: Any) -> None:
        self._base = base
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


def _namespace() -> _Overlay:
    lowlevel = _Overlay(trio.lowlevel, wait_readable=wait_readable)
    return _Overlay(trio, Lock=FastLock, lowlevel=lowlevel)


@contextlib.contextmanager
def installed(busy_poll: float = DEFAULT_BUSY_POLL) -> Iterator[None]:
    """Run pyfuse3's loop on this namespace (restored on exit), busy-polling up to
    ``busy_poll`` seconds for the next request (0: never). Only when pyfuse3 exposes the
    ``trio`` attribute it is built around; otherwise stock pyfuse3 runs unchanged."""
    if busy_poll < 0:
        raise ValueError(f"negative busy-poll window {busy_poll}")
    module: Any = pyfuse3
    original = getattr(module, "trio", None)
    if original is not trio:
        yield
        return
    module.trio = _namespace()
    _readiness.reset(busy_poll)
    try:
        yield
    finally:
        module.trio = original
        _readiness.reset(0.0)
