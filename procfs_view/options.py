"""Options that change what the views compute (the LXCFS-compatible flags)."""

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
