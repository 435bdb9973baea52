"""The inbound MX listener: mail for hosted addresses only (SPEC §1, §8).

- **RCPT** — a dict hit on the policy snapshot: a domain not hosted here → ``554 5.7.1``
  (never an open relay); an unknown address → ``550 5.1.1``; a mailbox already full, or
  that the declared ``SIZE=`` would overflow → ``452 4.2.2``.  Suspended addresses still
  receive (003 Art.20(3)).  A valid SRS address (a bounce to a forward) is accepted for
  return to the original sender, from the null sender only (SPEC §5: anything else would
  make a forwarding address an open relay to whoever it forwarded for,
  ``550 5.7.1``); a forged or expired one gets ``550 5.1.1``.
- **Connections** — behind the listener's gate (SPEC §8a, :func:`~mailplane.smtp.base.
  listener_gate`), with the session defences of :mod:`mailplane.smtp.guarded`.
- **Sender authentication** — SPF starts at the first accepted RCPT, DKIM/DMARC/ARC at
  the end of DATA, under one time budget (:mod:`mailplane.mailauth.verifier`); the
  results go on ``MessageContext.auth`` and into the one ``Authentication-Results`` of
  the stored copy (forged ones with our authserv-id removed, RFC 8601 §5).
- **DATA** — a bare LF normalised to CRLF (``mx.bare_newline``, Postfix 3.9's default;
  the DATA reader ends a message only at ``<CRLF>.<CRLF>``), the bytes checked
  (:func:`~mailplane.smtp.base.content_refusal`: a bare CR is refused; the MIME bounds of
  :func:`~mailplane.smtp.base.mime_refusal`), then the
  node's :class:`~mailplane.delivery.local.LocalDelivery` scans, plans and persists; the
  ``250`` goes out only once everything is durable.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.local import LocalDelivery
from mailplane.filters.engines.base import SpamEngine, VirusEngine
from mailplane.filters.scan import Scanner
from mailplane.mail.message import MessageContext, normalise_bare_lf
from mailplane.mail.srs import Srs, SrsError, srs_from_settings
from mailplane.mailauth.verifier import InboundVerifier, PendingChecks
from mailplane.net.gate import GatedServer, start_gated_server
from mailplane.policy.model import AddressPolicy, PolicySource
from mailplane.smtp import replies
from mailplane.smtp.base import (
    SHUTDOWN_GRACE_SECONDS,
    MailplaneSMTP,
    answer_data,
    close_gracefully,
    content_refusal,
    crlf_checked,
    declared_size,
    listener_gate,
    mime_refusal,
)
from mailplane.smtp.protocol import protocol_description
from mailplane.smtp.replies import SmtpReply

log = logging.getLogger(__name__)

LISTENER = "mx"


class MxHandler:
    """aiosmtpd handler: ``handle_RCPT`` and ``handle_DATA``."""

    def __init__(self, settings: Settings, policy_cache: PolicySource,
                 delivery: LocalDelivery) -> None:
        self.settings = settings
        self.policy_cache = policy_cache
        self.delivery = delivery
        self.srs: Srs = delivery.srs
        # Policies remembered at RCPT time (DESIGN step 1), per envelope.
        self._policies: weakref.WeakKeyDictionary[Envelope, dict[str, AddressPolicy]] = (
            weakref.WeakKeyDictionary()
        )
        # Bounces to our SRS addresses (SPEC §5): sent on to the original sender.
        self._srs_returns: weakref.WeakKeyDictionary[Envelope, list[str]] = (
            weakref.WeakKeyDictionary()
        )
        # Sender authentication (SPEC §8b), started at the first accepted RCPT.
        self.verifier = InboundVerifier(
            settings, hosted=lambda domain: policy_cache.snapshot.is_hosted_domain(domain))
        self._checks: weakref.WeakKeyDictionary[Envelope, PendingChecks] = (
            weakref.WeakKeyDictionary()
        )

    def _begin_checks(self, session: SmtpSession, envelope: Envelope) -> None:
        """SPF can start once a recipient is accepted (never for a stranger's MAIL FROM
        alone); the checks end with the envelope."""
        if envelope not in self._checks:
            self._checks[envelope] = self.verifier.begin(
                envelope, peer_ip=_peer_ip(session), helo=session.host_name,
                mail_from=envelope.mail_from or "")

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.mx.max_recipients:
            return replies.TOO_MANY_RECIPIENTS.line
        normalised = address.strip().lower()
        local_part, _, domain = normalised.rpartition("@")
        if self.srs.is_srs_address(normalised):
            if (envelope.mail_from or "").strip().strip("<>").strip():
                log.info("refused mail from a non-null sender to SRS address %s", normalised)
                return replies.SRS_BOUNCES_ONLY.line
            try:
                self.srs.reverse(normalised)
            except SrsError as exc:
                log.info("refused SRS address %s: %s", normalised, exc)
                return replies.UNKNOWN_RECIPIENT.line
            self._begin_checks(session, envelope)
            returns = self._srs_returns.setdefault(envelope, [])
            if normalised not in returns:
                returns.append(normalised)
                envelope.rcpt_tos.append(address)
                envelope.rcpt_options.extend(rcpt_options)
            return replies.RCPT_OK.line
        snapshot = self.policy_cache.snapshot
        if not local_part or not domain or not snapshot.is_hosted_domain(domain):
            return replies.RELAY_DENIED.line
        policy = snapshot.lookup(normalised)
        if policy is None or policy.status == "deleted":
            return replies.UNKNOWN_RECIPIENT.line
        if not await self.delivery.has_room(policy, declared_size(envelope.mail_options)):
            return replies.MAILBOX_FULL.line
        self._begin_checks(session, envelope)
        remembered = self._policies.setdefault(envelope, {})
        if normalised not in remembered:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        remembered[normalised] = policy
        return replies.RCPT_OK.line

    async def handle_DATA(
        self, server: SMTP, session: SmtpSession, envelope: Envelope
    ) -> str:
        return await answer_data(LISTENER, self._data(session, envelope, crlf_checked(server)))

    async def _data(self, session: SmtpSession, envelope: Envelope,
                    checked: bool) -> SmtpReply:
        raw = envelope.original_content or b""
        if not checked and self.settings.mx.bare_newline == "normalize":
            raw = normalise_bare_lf(raw)  # done by FastSMTP already; stock aiosmtpd not
        refused = content_refusal(raw, self.settings.mx.max_message_size,
                                  crlf_checked=checked)
        if refused is None:
            refused = await mime_refusal(raw, self.settings, LISTENER)
        if refused is not None:
            return refused
        recipients = list(self._policies.get(envelope, {}).items())
        srs_returns = self._srs_returns.get(envelope, [])
        if not recipients and not srs_returns:
            return replies.NO_VALID_RECIPIENTS
        ctx = MessageContext(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(address for address, _ in recipients),
            raw=raw,
            received_at=self.delivery.clock.now(),
            peer_ip=_peer_ip(session),
            helo=session.host_name or None,
            queue_id=secrets.token_hex(8),
        )
        checks = self._checks.get(envelope)
        if checks is not None:
            ctx.auth = await checks.finish(ctx)
            # Our header on top, forged ones gone.  The parsed header view stays the one
            # of the message as received (parsing it again would cost as much as the
            # checks): nothing reads Authentication-Results from it, engines get ``auth``.
            ctx.raw = self.verifier.stamp(raw, ctx.auth, ctx)
        await self.delivery.deliver(
            ctx, recipients, protocol="ESMTP" if session.extended_smtp else "SMTP",
            listener=LISTENER, srs_returns=srs_returns)
        return replies.MESSAGE_ACCEPTED


def _peer_ip(session: SmtpSession) -> str | None:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


class MxServer:
    """A running MX listener on the current event loop."""

    def __init__(self, server: GatedServer, handler: MxHandler,
                 protocols: weakref.WeakSet[SMTP], *, owns_delivery: bool) -> None:
        self._server = server
        self.handler = handler
        self._protocols = protocols
        self._owns_delivery = owns_delivery

    @property
    def port(self) -> int:
        return self._server.port

    async def aclose(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Graceful stop: see :func:`~mailplane.smtp.base.close_gracefully`."""
        await close_gracefully([self._server], self._protocols, grace_seconds=grace_seconds)
        await self.handler.verifier.aclose()
        if self._owns_delivery:
            await self.handler.delivery.aclose()


async def start_mx(
    settings: Settings,
    session_factory: sessionmaker[Session],
    policy_cache: PolicySource,
    clock: Clock,
    *,
    delivery: LocalDelivery | None = None,
    virus_engine: VirusEngine | None = None,
    spam_engine: SpamEngine | None = None,
    srs: Srs | None = None,
) -> MxServer:
    """Listen on ``settings.mx.host:port`` (port 0 = any free port) inside the running loop.

    ``delivery`` is the node's :class:`LocalDelivery` (shared with submission and the
    queue); without one, a private one is built from the given engines and closed with
    the listener (tests that start a lone MX)."""
    loop = asyncio.get_running_loop()
    owns_delivery = delivery is None
    if delivery is None:
        delivery = LocalDelivery(
            settings, session_factory, clock,
            scanner=Scanner(virus_engine, spam_engine, virus=settings.virus,
                            spam=settings.spam),
            srs=srs if srs is not None else srs_from_settings(settings, clock),
            policy=policy_cache)
    handler = MxHandler(settings, policy_cache, delivery)
    protocols: weakref.WeakSet[SMTP] = weakref.WeakSet()
    gate, session_limits = listener_gate(LISTENER, settings.mx, settings, protocols)

    def factory() -> SMTP:
        protocol = MailplaneSMTP(
            handler,
            session_limits=session_limits,
            limiter=gate.limiter,
            data_size_limit=settings.mx.max_message_size,
            enable_SMTPUTF8=True,
            hostname=settings.mx.hostname,
            ident="mailplane",
            loop=loop,
        )
        protocol.normalise_bare_lf = settings.mx.bare_newline == "normalize"
        protocols.add(protocol)
        return protocol

    server = await start_gated_server(
        factory, listener=LISTENER, host=settings.mx.host, port=settings.mx.port, gate=gate,
        backlog=settings.mx.listen_backlog, reuse_port=settings.mx.workers > 1,
    )
    log.info("MX listening on %s:%d (at most %d sessions, %d per client IP); protocol: %s",
             settings.mx.host, server.port, settings.mx.max_connections,
             settings.mx.max_connections_per_ip, protocol_description())
    return MxServer(server, handler, protocols, owns_delivery=owns_delivery)
