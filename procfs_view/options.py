"""Options that change what the views compute (the LXCFS-compatible flags), and the daemon's
tuning defaults that the command line shows without importing the FUSE stack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewOptions:
    """``swap``: off with ``-u/--disable-swap``; ``cpu_view``: ``--enable-cfs`` (quota-based CPU
    count); ``loadavg``: ``-l`` (per-container load average); ``virtualize``: off serves host
    files (toggled by SIGUSR2, as in LXCFS)."""

    swap: bool = True
    cpu_view: bool = False
    loadavg: bool = False
    virtualize: bool = True


#: Seconds the FUSE loop busy-polls for the next request before sleeping: longer than a
#: reader's gap between two requests of one open/read/close (15-20 us on the benchmark VM,
#: including its own wake-up), far shorter than a wake-up costs there (see fuseloop).
DEFAULT_BUSY_POLL = 50e-6
