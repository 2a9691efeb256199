"""Logging to stderr in one line per record, readable by journald, plus a rate limiter.

Under systemd, stderr is a journal stream (``$JOURNAL_STREAM`` names it); journald adds
the timestamp and unit itself and reads a ``<N>`` syslog priority prefix, so we print
only the priority, the logger and the message. On a terminal we add a timestamp and
the level name instead. Tracebacks are folded onto the same line so one event is one
journal entry.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import OrderedDict
from typing import TextIO

log = logging.getLogger(__name__)

# syslog priorities (sd-daemon.h): journald parses "<N>" at the start of a stderr line.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def _journal_priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class OneLineFormatter(logging.Formatter):
    """Folds multi-line messages and tracebacks into one line (``" | "`` between lines)."""

    def __init__(self, journal: bool) -> None:
        fmt = (
            "%(name)s: %(message)s"
            if journal
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        text = " | ".join(line for line in text.splitlines() if line.strip())
        if self.journal:
            return f"<{_journal_priority(record.levelno)}>{text}"
        return text


def stderr_is_journal(stream: TextIO = sys.stderr) -> bool:
    """True when systemd connected ``stream`` to the journal (``$JOURNAL_STREAM=dev:ino``)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def setup_logging(debug: bool) -> None:
    """Send every log record to stderr, one line each; DEBUG level when ``debug``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(journal=stderr_is_journal()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.captureWarnings(True)


class RateLimiter:
    """Lets one event per key through every ``interval`` seconds and counts the rest.

    A broken cgroup or a buggy view can fail on every read (thousands per second);
    logging each would flood the journal, logging none would hide the bug.
    """

    def __init__(self, interval: float = 60.0, max_keys: int = 1024) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None if this event must stay quiet, else how many were suppressed before it."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= self.max_keys:
            # Bounded memory: forget everything rather than grow with hostile input.
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        return self._suppressed.pop(key, 0)


class LogOnce:
    """Logs each distinct failure once (bounded memory), so a broken cgroup read a thousand
    times a second does not flood the journal."""

    def __init__(self, logger: logging.Logger, capacity: int = 1024) -> None:
        self.logger = logger
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def warning(
        self, key: tuple[str, str], message: str, *args: object, exc_info: bool = False
    ) -> None:
        if key in self._seen:
            self._seen.move_to_end(key)
            return
        self._seen[key] = time.monotonic()
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        self.logger.warning(message, *args, exc_info=exc_info)
