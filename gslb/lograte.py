"""Rate-limited logging for events that anyone outside can cause at line rate.

Standard library only; used by the query path (a bug hit by every packet), the api (failed
authentication, malformed HTTP, store failures) and the metrics collector. The rule: the
first event of each kind in a streak is logged in full by the caller (with its traceback
where there is one); the others are counted, and one summary line per `interval_s` says how
many there were and what the last one was, e.g. "57 more failed authentications in the last
10 s; last: POST /v1/regions/europe/drain from 192.0.2.7". A streak ends when a whole
interval passes without an event; the next event is then logged in full again.

The summary is written by the next event once the interval has passed, or, when a loop is
running, by a timer, so that the count of the last burst is not lost. Time is a parameter
(`clock`), so tests count lines without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable

KINDS_LIMIT = 32
"""Distinct kinds logged in full per streak; kinds are code locations, so few, but bounded."""


def printable(text: str, limit: int = 200) -> str:
    """`text` safe for one log line: control characters, lone surrogates and other non-printable
    characters escaped as Python does (`\\n`, `\\x00`, `\\ud800`), cut to `limit` characters."""
    out = text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[:limit] + "..."


def bug_kind(exc: BaseException) -> tuple[str, str, int]:
    """What tells one bug from another: the exception type and where it was raised."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return (type(exc).__qualname__, "", 0)
    return (type(exc).__qualname__, tb.tb_frame.f_code.co_filename, tb.tb_lineno)


def describe(exc: BaseException) -> str:
    """`Type: message` of an exception, for a summary line."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LogRate:
    """Counts events of one sort; says which to log in full, and logs the counts of the others."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval_s: float = 10.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what  # plural noun phrase: "failed authentications"
        self.interval_s = interval_s
        self.level = level
        self.clock = clock
        self.total = 0  # every event ever, logged in full or counted
        self._start: float | None = None  # the current window; None: no streak
        self._last_at = 0.0  # the latest event
        self._count = 0  # events counted (not logged in full) in the current window
        self._last = ""
        self._kinds: set[Hashable] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def first(self, last: str, kind: Hashable = None) -> bool:
        """Count one event; True when the caller should log it in full (the first of its
        `kind` in this streak). `last` describes it for the summary (made printable here)."""
        self.total += 1
        now = self.clock()
        if self._start is not None:
            if now - self._last_at >= self.interval_s:  # quiet for a whole interval: a new streak
                self.flush(now)
                self._start = None
            elif now - self._start >= self.interval_s:
                self.flush(now)
        self._last_at = now
        if self._start is None:
            self._start = now
            self._kinds = set()
        if kind not in self._kinds and len(self._kinds) < KINDS_LIMIT:
            self._kinds.add(kind)
            return True
        self._count += 1
        self._last = last
        self._arm(now)
        return False

    def flush(self, now: float | None = None) -> None:
        """Log the count of the current window, if any, and start the next one. With nothing
        counted the streak ends: the next event is logged in full."""
        now = self.clock() if now is None else now
        if self._count:
            elapsed = max(0.0, now - (self._start if self._start is not None else now))
            self.logger.log(
                self.level,
                "%d more %s in the last %.0f s; last: %s",
                self._count,
                self.what,
                elapsed,
                printable(self._last),
            )
            self._count = 0
            self._start = now
        else:
            self._start = None

    def _arm(self, now: float) -> None:
        """Flush when the window ends even if no event comes then (only inside a running loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None and self._timer_loop is loop and not loop.is_closed():
            return
        start = self._start if self._start is not None else now
        delay = max(0.0, start + self.interval_s - now)
        self._timer, self._timer_loop = loop.call_later(delay, self._on_timer), loop

    def _on_timer(self) -> None:
        self._timer = None
        if not self._count or self._start is None:
            return
        now = self.clock()
        if now - self._start >= self.interval_s:
            self.flush(now)
        else:  # an event flushed and started a new window since this timer was set
            self._arm(now)
