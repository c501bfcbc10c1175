"""Logging that cannot be turned against the bridge: no secrets from URLs, no floods.

* :class:`DropQueryString` removes the query string from uvicorn's access-log lines: a client may
  put a token in the URL (``?access_token=…``), and a log must never hold a secret.
* :class:`Throttle` bounds how many lines one noisy source writes: a push of a thousand broken
  events, or a stage failing on every record, must not fill the disk or bury the line that
  matters. What it holds back is counted and reported with the next line it lets through.

Standard library only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["DropQueryString", "Throttle", "install_access_log_filter"]


class DropQueryString(logging.Filter):
    """Rewrites uvicorn access records (``%s - "%s %s HTTP/%s" %d``) to show the path only."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?[query omitted]", *args[3:])
        return True


def install_access_log_filter() -> None:
    """Attach :class:`DropQueryString` to uvicorn's access logger (after uvicorn configured it)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, DropQueryString) for f in logger.filters):
        logger.addFilter(DropQueryString())


class Throttle:
    """At most ``lines`` log lines per ``per_s`` seconds; the rest are counted, not written.

    ``throttle(log.warning, "rejected %s", reason)`` writes the line, or holds it back when the
    budget of the current period is spent. The first line of a new period says how many were
    held back. Safe to share between threads.
    """

    def __init__(self, lines: int = 10, per_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.lines = lines
        self.per_s = per_s
        self._clock = clock
        self._lock = threading.Lock()
        self._period_start = float("-inf")
        self._written = 0
        self.suppressed = 0

    def __call__(self, emit: Callable[..., None], message: str, *args: object) -> bool:
        """Emit ``message % args`` through ``emit`` unless over budget; True when written."""
        with self._lock:
            now = self._clock()
            if now - self._period_start >= self.per_s:
                self._period_start, self._written = now, 0
            if self._written >= self.lines:
                self.suppressed += 1
                return False
            self._written += 1
            held, self.suppressed = self.suppressed, 0
        if held:
            emit(message + " (%d similar lines held back)", *args, held)
        else:
            emit(message, *args)
        return True
