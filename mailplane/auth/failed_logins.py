"""Failed logins: every one counted, a bounded number written to the log (SPEC §8a; the
class of issue 20 finding 10, where one IP wrote 2.4 GB of SRS refusals an hour).

A password guesser working from many addresses makes as many failed logins as it likes;
one INFO line each made the log grow with the attack.  Now every failure is counted in
``mailplane_login_failures_total{listener, reason}``, and the lines are the shared
:class:`~mailplane.net.throttled_log.ThrottledLog`'s: the first
:data:`FAILED_LOGINS_LOGGED_PER_MINUTE` of a listener in a minute are written — a
customer mistyping, a phone with an old password, stay visible one by one — the rest are
folded into the next line written ("and N more like it").  A line names the listener and
the client's address, as before: never the password, never the name that was typed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from mailplane import metrics
from mailplane.net.throttled_log import ThrottledLog

#: Lines per listener per minute about failed or refused logins (and per kind of lock
#: for the guard's lock lines); past it they are folded and counted.
FAILED_LOGINS_LOGGED_PER_MINUTE = 20

#: ``wrong_password`` (an unknown user too: one outcome), ``same_password`` (a wrong
#: password this client already failed with, answered from memory), ``locked`` (refused
#: unchecked by the login guard).
Reason = Literal["wrong_password", "same_password", "locked"]


def login_log(logger: logging.Logger, *,
              clock: Callable[[], float] = time.monotonic) -> ThrottledLog:
    """A module's throttled log for login lines."""
    return ThrottledLog(logger, burst=FAILED_LOGINS_LOGGED_PER_MINUTE, clock=clock)


class FailedLogins:
    """The failed logins of one module's logger."""

    def __init__(self, logger: logging.Logger, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = login_log(logger, clock=clock)

    def record(self, listener: str, reason: Reason, message: str, *args: object) -> None:
        """Count one failed login of ``listener`` and log ``message`` unless that
        listener's lines are over their budget for this minute."""
        metrics.LOGIN_FAILURES.labels(listener, reason).inc()
        self._log.info(("failed", listener), message, *args)

    def unavailable(self, listener: str, message: str, *args: object) -> None:
        """A login that could not be checked (the database away): every login while it
        lasts would log an ERROR line."""
        self._log.error(("unavailable", listener), message, *args)
