"""Log lines that cannot flood the log (SPEC §8a: "rate-limited logging of repeated errors").

Under attack the same error repeats per connection or per command: a client over its
limit, ``accept()`` failing with EMFILE, a hostile command.  :class:`ThrottledLog` writes
the first occurrence of a *key* at once (the first ``burst`` of an interval, where single
events matter to someone — a customer's failed logins), then folds the rest: the next
line written, an interval on, says how many were folded into it (and each is counted in
``mailplane_log_lines_suppressed_total``).
The asyncio exception handler installed by :func:`install_loop_exception_handler` routes
the event loop's own reports (``socket.accept() out of system resource``) through it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from mailplane import metrics

#: One line per key per minute at most (a flood of 20,000 refusals is one line a minute).
DEFAULT_INTERVAL_SECONDS = 60.0
#: Distinct keys remembered; beyond it the oldest are forgotten (bounded memory).
MAX_KEYS = 4096
REPEATS_SUFFIX = " (and %d more like it in the last %.0f s)"


class ThrottledLog:
    """A logger wrapper that folds repeats of the same key: ``burst`` lines per interval
    (one by default), the count of the rest on the next line written."""

    def __init__(self, logger: logging.Logger, *,
                 interval_seconds: float = DEFAULT_INTERVAL_SECONDS, burst: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``burst``: lines of one key written per interval before the rest are folded."""
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._logger = logger
        self._interval = interval_seconds
        self._burst = burst
        self._clock = clock
        # key -> (start of its interval, lines written in it, repeats folded since)
        self._seen: dict[Hashable, tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: Hashable, message: str, *args: object,
            exc_info: BaseException | None = None) -> bool:
        """Write ``message`` unless ``key`` has had its ``burst`` of lines in its
        interval; return whether a line was written."""
        repeats = self.admit(key)
        if repeats is None:
            return False
        if repeats:
            message += REPEATS_SUFFIX
            args = (*args, repeats, self._interval)
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def admit(self, key: Hashable) -> int | None:
        """None if ``key`` has had its ``burst`` of lines in its interval (the repeat is
        counted), else how many repeats were folded since its last line."""
        now = self._clock()
        repeats = 0
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self._interval:
                start, written, folded_since = last
                folded = written >= self._burst
                if folded:
                    self._seen[key] = (start, written, folded_since + 1)
                else:
                    self._seen[key] = (start, written + 1, folded_since)
            else:
                folded = False
                repeats = last[2] if last is not None else 0
                if len(self._seen) >= MAX_KEYS and key not in self._seen:
                    self._forget_oldest()
                self._seen[key] = (now, 1, 0)
        if folded:
            metrics.SUPPRESSED_LOG_LINES.labels(self._logger.name).inc()
            return None
        return repeats

    @property
    def interval(self) -> float:
        return self._interval

    def warning(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def info(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.INFO, key, message, *args)

    def error(self, key: Hashable, message: str, *args: object,
              exc_info: BaseException | None = None) -> bool:
        return self.log(logging.ERROR, key, message, *args, exc_info=exc_info)

    def _forget_oldest(self) -> None:
        for old in sorted(self._seen, key=lambda k: self._seen[k][0])[: MAX_KEYS // 4]:
            del self._seen[old]


class ThrottleFilter(logging.Filter):
    """Folds repeats of each message *format* of a logger we do not own into one line per
    interval — aiosmtpd's ``mail.log`` warns once per unknown command (``unrecognised:
    %s``) and once per successful AUTH (``Session.login_data is deprecated``), which any
    client can repeat at will."""

    def __init__(self, logger: logging.Logger, *,
                 interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        super().__init__()
        self._throttle = ThrottledLog(logger, interval_seconds=interval_seconds)

    def filter(self, record: logging.LogRecord) -> bool:
        repeats = self._throttle.admit((record.levelno, str(record.msg)))
        if repeats is None:
            return False
        if repeats and isinstance(record.args, tuple):
            record.msg = str(record.msg) + REPEATS_SUFFIX
            record.args = (*record.args, repeats, self._throttle.interval)
        return True


def throttle_logger(name: str) -> None:
    """Install a :class:`ThrottleFilter` on logger ``name`` (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ThrottleFilter) for f in logger.filters):
        logger.addFilter(ThrottleFilter(logger))


def install_loop_exception_handler(loop: asyncio.AbstractEventLoop,
                                   throttle: ThrottledLog) -> None:
    """Route the loop's error reports through ``throttle``: the first of a kind with its
    traceback, then one line per interval (asyncio reports EMFILE on ``accept()`` once a
    second per listener for as long as it lasts)."""

    def handle(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exception = context.get("exception")
        message = str(context.get("message") or "unhandled error in the event loop")
        key = ("asyncio", message, type(exception).__name__,
               getattr(exception, "errno", None))
        detail = f": {exception}" if exception is not None else ""
        throttle.error(key, "%s%s", message, detail,
                       exc_info=exception if isinstance(exception, BaseException) else None)

    loop.set_exception_handler(handle)
