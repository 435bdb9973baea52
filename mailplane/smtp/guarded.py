"""The per-session defences of both SMTP listeners (SPEC §8a, issue 15), after Postfix's
smtpd: the protocol class :class:`GuardedSMTP` that :class:`~mailplane.smtp.base.
MailplaneSMTP` builds on.

- **Admission** — the gate (:mod:`mailplane.net.gate`) admitted the connection; the
  ticket is released when the connection is lost.
- **Greeting deadline** — a client that has not said HELO/EHLO within
  ``greeting_deadline_seconds`` gets ``421 4.4.2`` and is closed.
- **Idle timeout** — ``idle_timeout_seconds`` between commands (RFC 5321 §4.5.3.2.7),
  ``pressure_idle_timeout_seconds`` while the listener is under pressure; the timer is
  lazy (it re-arms from the last byte received, so a long DATA upload is not cut) and
  answers ``421 4.4.2`` before closing.  When the listener fills up, sessions idle longer
  than the pressure timeout are shed (:func:`shed_idle_sessions`).
- **Error tarpit** — Postfix ``smtpd_error_sleep_time`` / ``smtpd_soft_error_limit`` /
  ``smtpd_hard_error_limit``: every 4xx/5xx reply counts; past the soft limit each error
  reply waits (``asyncio.sleep``, never blocking the loop) a growing delay; at the hard
  limit ``421 4.7.0`` and close.  A delivered message resets the count.  RCPTs over the
  per-message recipient limit are excused up to ``recipient_overshoot_limit``
  (:meth:`GuardedSMTP.recipient_over_limit`).
- **Command hygiene** — a command argument holding a control character (a bare CR, NUL,
  C1, U+2028/9) or invalid UTF-8 is refused ``501 5.5.2`` before aiosmtpd parses it, so
  such a value can never reach a header (a HELO name in ``Received``, an address in
  ``Return-Path``) or an outbound command; a non-ASCII-digit ``SIZE=`` is ``501 5.5.4``,
  and a path longer than RFC 5321's 256 octets ``501 5.1.3``.
- **Unexpected errors** — answered ``451 4.3.0``, logged once per interval with the first
  traceback, never a ``500`` carrying an exception text to the client.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, AnyStr

from aiosmtpd.smtp import TLSSetupException

from mailplane import metrics
from mailplane.config.limits import ListenerLimits, SmtpErrorLimits
from mailplane.net.gate import Admission
from mailplane.net.limits import ConnectionLimiter
from mailplane.net.throttled_log import ThrottledLog
from mailplane.net.tls import handshake_failed
from mailplane.smtp import replies
from mailplane.smtp.protocol import FastSMTP

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: C0 controls but TAB, DEL, C1 controls, U+2028/U+2029 and lone surrogates (bytes that
#: were not UTF-8, decoded by aiosmtpd with surrogateescape).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SIZE_PARAM = re.compile(r"(?:^|\s)SIZE=(\S*)", re.IGNORECASE)
#: Shedding idle sessions walks every session: at most once per this many seconds.
SHED_INTERVAL_SECONDS = 1.0


def has_control_character(text: str) -> bool:
    return _CONTROL.search(text) is not None


@dataclass(frozen=True, slots=True)
class SessionLimits:
    listener: str
    greeting_deadline: float
    idle_timeout: float
    pressure_idle_timeout: float
    error_sleep: float
    max_error_sleep: float
    soft_errors: int
    hard_errors: int
    recipient_overshoot: int = 1000

    @classmethod
    def from_settings(cls, listener: str, section: Any) -> SessionLimits:
        """From a ``[mx]`` or ``[submission]`` section (listener and error limits)."""
        assert isinstance(section, ListenerLimits) and isinstance(section, SmtpErrorLimits)
        return cls(listener=listener,
                   greeting_deadline=section.greeting_deadline_seconds,
                   idle_timeout=float(getattr(section, "idle_timeout_seconds", 300.0)),
                   pressure_idle_timeout=section.pressure_idle_timeout_seconds,
                   error_sleep=section.error_sleep_seconds,
                   max_error_sleep=section.max_error_sleep_seconds,
                   soft_errors=section.soft_error_limit,
                   hard_errors=section.hard_error_limit,
                   recipient_overshoot=section.recipient_overshoot_limit)

    def error_delay(self, errors: int) -> float:
        """The wait before the ``errors``-th error reply: none up to the soft limit, then
        ``error_sleep`` per error above it, capped."""
        above = errors - self.soft_errors
        if above <= 0 or self.error_sleep <= 0:
            return 0.0
        return float(min(self.error_sleep * above, self.max_error_sleep))


class GuardedSMTP(FastSMTP, Admission):
    """FastSMTP with the session defences above; ``limits`` None = none (unit tests)."""

    in_data = False
    #: The command being answered (None between commands): the enhanced status code of
    #: a stock aiosmtpd reply depends on it (:func:`~mailplane.smtp.replies.
    #: with_enhanced_code`).
    command_in_progress: str | None = None
    _errors = 0
    _recipients_over_limit = 0
    _error_excused = False
    _closing = False
    _greeting_timer: asyncio.TimerHandle | None = None
    _session_limits: SessionLimits | None = None
    _limiter: ConnectionLimiter | None = None

    def __init__(self, handler: Any, *, session_limits: SessionLimits | None = None,
                 limiter: ConnectionLimiter | None = None, **kwargs: Any) -> None:
        self._session_limits = session_limits
        self._limiter = limiter
        self._normal_timeout = 300.0
        self.last_activity = time.monotonic()
        if session_limits is not None:
            kwargs.setdefault("timeout", session_limits.idle_timeout)
        super().__init__(handler, **kwargs)

    def command_method(self, command: str, method: Any) -> Any:
        """Every command through :meth:`_checked` (bound when dispatched, not per
        connection: wrapping all twenty at each connection was 4 % of the MX's CPU)."""
        return self._checked(command, method)

    # --- idle timer ---------------------------------------------------------------------

    @property
    def _timeout_duration(self) -> float:
        limits, limiter = self._session_limits, self._limiter
        if limits is not None and limiter is not None and limiter.under_pressure:
            return min(self._normal_timeout, limits.pressure_idle_timeout)
        return self._normal_timeout

    @_timeout_duration.setter
    def _timeout_duration(self, value: float) -> None:
        self._normal_timeout = float(value)

    def _reset_timeout(self, duration: float | None = None) -> None:
        self.last_activity = time.monotonic()
        super()._reset_timeout(duration)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        idle = time.monotonic() - self.last_activity
        remaining = self._timeout_duration - idle
        if remaining > 0.05:
            # Bytes arrived since the timer was armed (DATA in progress): wait the rest.
            self._timeout_handle = self.loop.call_later(remaining, self._timeout_cb)
            return
        self.close_with(replies.IDLE_TIMEOUT.line)

    def shed_if_idle(self, idle_for: float, now: float) -> bool:
        """Close this session (``421 4.4.2``) if it has been idle ``idle_for`` seconds and
        is not receiving a message; used when the listener is full."""
        if self.in_data or self._closing or now - self.last_activity < idle_for:
            return False
        self.close_with(replies.IDLE_TIMEOUT.line)
        return True

    # --- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        limits = self._session_limits
        if limits is not None and self._greeting_timer is None:
            self._greeting_timer = self.loop.call_later(limits.greeting_deadline,
                                                        self._greeting_expired)

    def connection_lost(self, error: Exception | None) -> None:
        self._cancel_greeting_timer()
        self.release_admission()
        super().connection_lost(error)

    def _cancel_greeting_timer(self) -> None:
        if self._greeting_timer is not None:
            self._greeting_timer.cancel()
            self._greeting_timer = None

    def _greeting_expired(self) -> None:
        self._greeting_timer = None
        session = self.session
        if session is not None and not session.host_name:
            limits = self._session_limits
            metrics.LIMIT_REFUSALS.labels(limits.listener if limits else "smtp",
                                          "greeting_deadline").inc()
            self.close_with(replies.GREETING_TIMEOUT.line)

    def close_with(self, line: str) -> None:
        """Write ``line`` (a 421) and close the connection; nothing more is processed."""
        self._closing = True
        transport: Any = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(line.encode() + b"\r\n")
            transport.close()
        handler_task: Any = getattr(self, "_handler_coroutine", None)
        if handler_task is not None and not self.in_data:
            handler_task.cancel()

    # --- commands -----------------------------------------------------------------------

    def _checked(self, command: str, method: Callable[[Any], Awaitable[None]]
                 ) -> Callable[[Any], Awaitable[None]]:
        async def run(arg: str | None) -> None:
            self.command_in_progress = command
            try:
                await checked(arg)
            finally:
                self.command_in_progress = None

        async def checked(arg: str | None) -> None:
            if arg and has_control_character(arg):
                await self.push(replies.COMMAND_CONTROL_CHARACTER.line)
                return
            if command == "MAIL" and arg and not _sizes_are_digits(arg):
                await self.push(replies.BAD_MAIL_PARAMETERS.line)
                return
            if command in ("MAIL", "RCPT") and arg and self._path_too_long(arg):
                await self.push(replies.PATH_TOO_LONG.line)
                return
            await method(arg)
            if command in ("HELO", "EHLO") and self.session is not None \
                    and self.session.host_name:
                self._cancel_greeting_timer()

        return run

    def _path_too_long(self, arg: str) -> bool:
        """RFC 5321 §4.5.3.1.3: a path is at most 256 octets (254 between the brackets);
        a longer one would overflow every column and SRS address it is copied into."""
        _keyword, _, rest = arg.partition(":")
        address, _params = self._getaddr(rest.lstrip())
        return bool(address) and len(str(address).encode("utf-8", "surrogateescape")) > 254

    def exhaust_error_budget(self) -> None:
        """A hook for handlers that know the client is abusing — an IP that keeps
        guessing SRS addresses (issue 20), whatever session it opens: the next error
        reply comes after the tarpit's longest delay and closes the session."""
        limits = self._session_limits
        if limits is not None:
            self._errors = max(self._errors, limits.hard_errors - 1)

    def recipient_over_limit(self) -> None:
        """A RCPT past the per-message recipient limit is being refused (``452 4.5.3``):
        the first ``recipient_overshoot_limit`` of a session are no error (Postfix's
        ``smtpd_recipient_overshoot_limit``, counted per session as there) — a client
        with more recipients than the limit is honest, and sends the rest next."""
        self._recipients_over_limit += 1
        limits = self._session_limits
        if limits is not None and self._recipients_over_limit <= limits.recipient_overshoot:
            self._error_excused = True

    async def push(self, status: AnyStr) -> None:
        if self._closing:
            return
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        limits = self._session_limits
        excused, self._error_excused = self._error_excused, False
        if (limits is None or text[:1] not in ("4", "5") or text.startswith("421")
                or excused):
            if self.in_data and text.startswith("250"):
                self._errors = 0  # Postfix: errors count "without delivering mail"
            await super().push(status)
            return
        self._errors += 1
        delay = limits.error_delay(self._errors)
        if delay:
            metrics.TARPIT_DELAYS.labels(limits.listener).inc()
            await asyncio.sleep(delay)
        await super().push(status)
        if self._errors >= limits.hard_errors:
            metrics.LIMIT_REFUSALS.labels(limits.listener, "smtp_errors").inc()
            _throttled.info((limits.listener, "hard_errors"),
                            "%s: closing a session from %s after %d errors",
                            limits.listener, self._peer_text(), self._errors)
            self.close_with(replies.TOO_MANY_ERRORS.line)

    async def handle_exception(self, error: Exception) -> str:
        limits = self._session_limits
        listener = limits.listener if limits is not None else "smtp"
        if isinstance(error, TLSSetupException):
            # STARTTLS failed (a TLS 1.0 client, no common cipher, a scanner): the
            # client's doing, one throttled line; aiosmtpd closes the connection.
            handshake_failed(listener, self._peer_text(), error.__cause__)
            return replies.TLS_HANDSHAKE_FAILED.line
        _throttled.error((listener, type(error).__name__),
                         "%s: unexpected error in a session from %s: %s", listener,
                         self._peer_text(), type(error).__name__, exc_info=error)
        return replies.TEMPORARY_FAILURE.line

    def _peer_text(self) -> str:
        peer = self.session.peer if self.session is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


def _sizes_are_digits(arg: str) -> bool:
    """RFC 1870 ``SIZE=`` is ASCII digits (aiosmtpd would ``int()`` a Unicode digit)."""
    return all(value.isascii() and value.isdigit()
               for value in _SIZE_PARAM.findall(arg))


def shed_idle_sessions(sessions: Iterable[object], idle_for: float) -> int:
    """Close sessions idle for ``idle_for`` seconds (``421 4.4.2``); how many closed."""
    now = time.monotonic()
    return sum(1 for session in list(sessions)
               if isinstance(session, GuardedSMTP) and session.shed_if_idle(idle_for, now))


def pressure_shedder(sessions: weakref.WeakSet[Any], limits: SessionLimits
                     ) -> Callable[[], None]:
    """The limiter's ``on_pressure`` callback: shed idle sessions at most once a second."""
    last = [0.0]

    def shed() -> None:
        now = time.monotonic()
        if now - last[0] < SHED_INTERVAL_SECONDS:
            return
        last[0] = now
        closed = shed_idle_sessions(sessions, limits.pressure_idle_timeout)
        if closed:
            _throttled.warning((limits.listener, "shed"), "%s under pressure: closed %d "
                               "idle session(s)", limits.listener, closed)

    return shed
