"""What MX and submission share: the protocol class they both speak, what DATA does
with any message's bytes, how failures become replies, and a graceful stop.

- :class:`MailplaneSMTP` — :class:`~mailplane.smtp.protocol.FastSMTP` with every reply
  from :mod:`~mailplane.smtp.replies` (aiosmtpd's own size refusals re-worded), and DATA
  marked in flight so a stopping listener lets it finish (SPEC §8).
- :func:`checked_content` — the one content check of both listeners, before any other
  work: a bare LF normalised to CRLF (``mx.bare_newline``, SPEC §8a), then
  :func:`content_refusal` — a bare CR or LF left (SMTP smuggling, RFC 5321 §2.3.8) and the
  size limit — and :func:`mime_refusal` — the MIME bounds (``554 5.6.0``, once: a message
  too deep to walk is never retried into a 451 loop).
- :class:`~mailplane.smtp.transaction.Transaction` — the envelope aiosmtpd creates for each
  transaction (``_create_envelope``), carrying the handlers' per-transaction state.
- :func:`listener_gate` — the accept gate of a listener (:mod:`mailplane.net.gate`):
  connection limits per listener and per client IP, shedding idle sessions under
  pressure.
- :func:`answer_data` — the DATA work of a handler with every failure turned into its
  4xx (never a traceback to the client), counted per listener.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
import weakref
from collections.abc import Awaitable, Sequence
from typing import Any, AnyStr, Protocol

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from mailplane import metrics
from mailplane.config.limits import ListenerLimits
from mailplane.config.settings import Settings
from mailplane.delivery.local import DeliveryDeferred
from mailplane.delivery.plan import RecipientsGone
from mailplane.mail.message import has_bare_line_ending, normalise_bare_lf
from mailplane.mail.mime import MimeLimits, MimeTooComplex, check_structure, within_cheap_bound
from mailplane.mail.trace import transmission_type
from mailplane.net.gate import Gate
from mailplane.net.limits import ConnectionCounts, ConnectionLimiter, ConnectionLimits
from mailplane.net.throttled_log import ThrottledLog
from mailplane.smtp import replies
from mailplane.smtp.guarded import GuardedSMTP, SessionLimits, pressure_shedder
from mailplane.smtp.protocol import FastSMTP
from mailplane.smtp.replies import SmtpReply, with_enhanced_code
from mailplane.smtp.transaction import Transaction

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: Why a delivery was deferred → what the sending side is told.
DEFERRED_REPLIES: dict[str, SmtpReply] = {
    "mailbox_full": replies.MAILBOX_FULL,
    "scanner_unavailable": replies.SCANNER_UNAVAILABLE,
}


def crlf_checked(server: SMTP) -> bool:
    """True if the protocol already found the content of the DATA being handled free of
    bare CR and LF (:attr:`FastSMTP.content_crlf_only`; never for stock aiosmtpd)."""
    return isinstance(server, FastSMTP) and server.content_crlf_only


def content_refusal(raw: bytes, max_size: int, *,
                    crlf_checked: bool = False) -> SmtpReply | None:
    """The refusal every listener gives a message's bytes before any other work: bare CR
    or LF (SMTP smuggling, RFC 5321 §2.3.8) or over the size limit; None if acceptable.
    ``crlf_checked``: the protocol has counted the line endings already (:func:`crlf_checked`)."""
    if not crlf_checked and has_bare_line_ending(raw):
        return replies.BARE_LINE_ENDING
    if len(raw) > max_size:
        return replies.MESSAGE_TOO_BIG
    return None


async def mime_refusal(raw: bytes, settings: Settings, listener: str) -> SmtpReply | None:
    """``554 5.6.0`` for a message beyond ``mx.max_mime_depth`` / ``mx.max_mime_parts``;
    the full check (a bounded parse) runs in a thread, and only for the rare message a
    cheap count cannot clear."""
    limits = MimeLimits(settings.mx.max_mime_depth, settings.mx.max_mime_parts)
    if within_cheap_bound(raw, limits):
        return None
    try:
        await asyncio.to_thread(check_structure, raw, limits)
    except MimeTooComplex as exc:
        metrics.LIMIT_REFUSALS.labels(listener, "mime_structure").inc()
        _throttled.info((listener, "mime_structure"), "%s refused a message: %s", listener,
                        exc)
        return replies.MIME_TOO_COMPLEX
    return None


async def checked_content(server: SMTP, envelope: Envelope, settings: Settings,
                          listener: str) -> tuple[bytes, SmtpReply | None]:
    """The message's bytes as every listener stores them, and the refusal they get, if any
    (SPEC §8a; MX and submission alike): a bare LF becomes CRLF when ``mx.bare_newline``
    is "normalize" (FastSMTP did it while reading; stock aiosmtpd's content is normalised
    here), then :func:`content_refusal` and :func:`mime_refusal`."""
    raw = envelope.original_content or b""
    checked = crlf_checked(server)
    if not checked and settings.mx.bare_newline == "normalize":
        raw = normalise_bare_lf(raw)
    refused = content_refusal(raw, settings.mx.max_message_size, crlf_checked=checked)
    if refused is None:
        refused = await mime_refusal(raw, settings, listener)
    return raw, refused


def received_with(server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
    """The ``with`` keyword of this hop's ``Received`` (RFC 3848, RFC 6531): ESMTP,
    ESMTPS, ESMTPSA, UTF8SMTPS, … from what the session really negotiated."""
    tls = isinstance(server, MailplaneSMTP) and server.tls_in_use
    return transmission_type(extended=session.extended_smtp, tls=tls,
                             authenticated=bool(session.authenticated),
                             smtputf8=envelope.smtp_utf8)


#: Extensions both listeners add to aiosmtpd's (SIZE, 8BITMIME, SMTPUTF8, STARTTLS, AUTH):
#: RFC 2920 — aiosmtpd reads commands from a stream, so a pipelined batch is answered in
#: order — and RFC 2034 (see :func:`~mailplane.smtp.replies.with_enhanced_code`).
EXTRA_EHLO_KEYWORDS = ("PIPELINING", "ENHANCEDSTATUSCODES")


class EsmtpHandler:
    """What an SMTP handler of ours says to EHLO (aiosmtpd's five-argument
    ``handle_EHLO`` hook): aiosmtpd's keywords plus :data:`EXTRA_EHLO_KEYWORDS`."""

    async def handle_EHLO(self, server: SMTP, session: SmtpSession, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname  # the hook's job when it is present
        return [responses[0], *(f"250-{keyword}" for keyword in EXTRA_EHLO_KEYWORDS),
                *responses[1:]]


def too_many_recipients(server: SMTP, listener: str) -> str:
    """``452 4.5.3`` for a RCPT past the per-message recipient limit (RFC 5321 §4.5.3.1.8:
    the client sends the rest in another transaction), excused from the error tarpit up
    to the overshoot limit (:meth:`~mailplane.smtp.guarded.GuardedSMTP.
    recipient_over_limit`)."""
    if isinstance(server, GuardedSMTP):
        server.recipient_over_limit()
    metrics.LIMIT_REFUSALS.labels(listener, "recipients_per_message").inc()
    return replies.TOO_MANY_RECIPIENTS.line


def listener_gate(listener: str, section: ListenerLimits, settings: Settings,
                  sessions: weakref.WeakSet[SMTP], *,
                  tls: ssl.SSLContext | None = None,
                  counts: ConnectionCounts | None = None) -> tuple[Gate, SessionLimits]:
    """The accept gate of an SMTP listener and the limits of its sessions: refused
    connections get ``421 4.7.0`` at once; when the listener fills up, sessions idle
    longer than the pressure timeout are shed.  ``counts``: the node's shared counts
    (:mod:`mailplane.net.anvil`) when several processes serve the listener."""
    session_limits = SessionLimits.from_settings(listener, section)
    limiter = ConnectionLimiter(ConnectionLimits.from_settings(
        listener, section, settings.security.limit_exempt_networks), counts=counts)
    limiter.on_pressure = pressure_shedder(sessions, session_limits)
    refusal = (replies.TOO_MANY_CONNECTIONS.line + "\r\n").encode("ascii")
    gate = Gate(limiter, refusal, tls=tls, handshake_timeout=section.greeting_deadline_seconds)
    return gate, session_limits


async def answer_data(listener: str, work: Awaitable[SmtpReply]) -> str:
    """Run a listener's DATA work and turn any failure into its 4xx (never a traceback to
    the client), counting the outcome and the DATA-to-reply latency per listener."""
    started = time.perf_counter()
    try:
        reply = await work
    except DeliveryDeferred as exc:
        reply = DEFERRED_REPLIES[exc.reason]
    except RecipientsGone:  # deleted since this node's last policy refresh (issue 20)
        reply = replies.UNKNOWN_RECIPIENT
    except Exception as exc:
        reply = failure_reply(exc, listener)
    metrics.MESSAGES.labels(listener, metrics.outcome_of(reply.code)).inc()
    if reply.code < 300:
        metrics.DATA_LATENCY.labels(listener).observe(time.perf_counter() - started)
    return reply.line


_STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def failure_reply(exc: BaseException, listener: str) -> SmtpReply:
    """The 4xx for an unexpected failure while receiving: a full disk or quota is
    ``452 4.3.1`` (RFC 3463 "mail system full"; the sender retries later), anything else
    ``451 4.3.0``.  The delivery writer removed every partial write before this runs."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_FULL_ERRNOS:
        _throttled.error((listener, "storage_full"), "%s delivery failed: storage full (%s);"
                         " answering 452", listener, exc.strerror)
        return replies.STORAGE_FULL
    # The first of a kind with its traceback, then one line a minute: a message that
    # trips a bug can be sent again and again.
    _throttled.error((listener, "delivery_failed", type(exc).__name__),
                     "%s delivery failed; answering 451", listener, exc_info=exc)
    return replies.TEMPORARY_FAILURE


def declared_size(mail_options: list[str]) -> int:
    """The ``SIZE=`` the client declared at MAIL FROM (RFC 1870), or 0."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


class MailplaneSMTP(GuardedSMTP):
    """aiosmtpd's SMTP with the session defences of :class:`~mailplane.smtp.guarded.
    GuardedSMTP` and its built-in size refusals spoken as our named reply.

    aiosmtpd itself answers an oversize MAIL FROM SIZE= or DATA with its own 552 texts;
    every reply mailplane sends comes from :mod:`mailplane.smtp.replies`.
    """

    _OWN_SIZE_REPLIES = ("552 Error: Too much mail data",
                         "552 Error: message size exceeds fixed maximum message size")

    in_data = False
    shutting_down = False
    _data_done: asyncio.Event | None = None

    def _create_envelope(self) -> Transaction:
        """aiosmtpd's hook for a new transaction's envelope: ours carries the handlers'
        per-transaction state (:mod:`mailplane.smtp.transaction`)."""
        return Transaction()

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            if status.startswith(self._OWN_SIZE_REPLIES):
                await super().push(replies.MESSAGE_TOO_BIG.line)
                return
            await super().push(with_enhanced_code(status, self.command_in_progress))
            return
        await super().push(status)

    @property
    def tls_in_use(self) -> bool:
        """The session runs over TLS (after STARTTLS, or on an implicit-TLS port)."""
        transport: Any = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    async def smtp_DATA(self, arg: str) -> None:
        """DATA, marked in flight from the command until its reply was written, so a
        shutdown waits for it; after that reply a stopping server says 421 and closes."""
        self.in_data = True
        self._data_done = asyncio.Event()
        try:
            await super().smtp_DATA(arg)
        finally:
            self.in_data = False
            self._data_done.set()
        if self.shutting_down:
            self.say_shutting_down()

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        # The transaction ends with the connection: a fresh envelope (the
        # ``_create_envelope`` hook) releases the old one at once — not at the next
        # garbage collection — and with it what hangs on it (the MX's pending sender
        # checks are cancelled then, mailauth.verifier).
        self.envelope = self._create_envelope()

    async def data_finished(self) -> None:
        if self.in_data and self._data_done is not None:
            await self._data_done.wait()

    def say_shutting_down(self) -> None:
        """``421 4.3.2`` and close (RFC 5321 §3.8); ``close()`` flushes the write first."""
        self.close_with(replies.SHUTTING_DOWN.line)


#: How long a stopping listener waits for transactions in DATA (SPEC §8: a message being
#: received when SIGTERM arrives still gets its 250; nothing accepted is dropped).
SHUTDOWN_GRACE_SECONDS = 30.0


class Listening(Protocol):
    """A listening server (``asyncio.Server`` or :class:`~mailplane.net.gate.GatedServer`)."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


async def close_gracefully(
    servers: Sequence[Listening], protocols: weakref.WeakSet[SMTP],
    *, grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
) -> None:
    """Stop listening; idle sessions get 421 now; sessions in DATA finish (bounded by
    ``grace_seconds``) and get 421 after their reply; whatever is left is then closed."""
    for server in servers:
        server.close()
    for protocol in list(protocols):
        if isinstance(protocol, MailplaneSMTP):
            protocol.shutting_down = True
            if not protocol.in_data:
                protocol.say_shutting_down()
    in_flight = [asyncio.create_task(p.data_finished()) for p in list(protocols)
                 if isinstance(p, MailplaneSMTP) and p.in_data]
    if in_flight:
        _done, pending = await asyncio.wait(in_flight, timeout=grace_seconds)
        for task in pending:
            task.cancel()
    for protocol in list(protocols):
        transport: Any = protocol.transport
        if transport is not None:
            if isinstance(protocol, MailplaneSMTP) and protocol.in_data:
                log.warning("closing a session still in DATA after %.0f s", grace_seconds)
            transport.close()
    for server in servers:
        await server.wait_closed()
