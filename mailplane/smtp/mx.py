"""The inbound MX listener: mail for hosted addresses only (SPEC §1, §8).

- **RCPT** — a dict hit on the policy snapshot: a domain not hosted here → ``554 5.7.1``
  (never an open relay); an unknown address → ``550 5.1.1``; a mailbox already full, or
  that the declared ``SIZE=`` would overflow → ``452 4.2.2``.  Suspended addresses still
  receive (003 Art.20(3)).  An SRS address takes only real bounces of real forwards,
  scanned and rate limited (:mod:`mailplane.smtp.srs_returns`, SPEC §5, issue 20).
  ``postmaster@``/``abuse@`` of any hosted domain go to the operator's mailboxes
  (``mx.role_mailboxes``; RFC 5321 §4.5.1, RFC 2142), one copy per destination, rate
  limited per client IP and scanned (:mod:`mailplane.smtp.role_mail`).
- **TLS** — STARTTLS (RFC 3207) with the node's certificate, TLS 1.2 or newer
  (``mx.starttls``, ``[tls]``; SPEC §8b); a failed handshake is one throttled log line.
  EHLO also offers PIPELINING and ENHANCEDSTATUSCODES; ``Received`` says ESMTP, ESMTPS,
  UTF8SMTPS, … as negotiated (RFC 3848, RFC 6531).
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
import ssl
import weakref
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.local import LocalDelivery
from mailplane.filters.engines.base import SpamEngine, VirusEngine
from mailplane.filters.scan import Scanner
from mailplane.mail.message import MessageContext
from mailplane.mail.srs import Srs, srs_from_settings
from mailplane.mailauth.verifier import InboundVerifier
from mailplane.net.anvil import NodeCounts
from mailplane.net.gate import GatedServer, start_gated_server
from mailplane.net.throttled_log import ThrottledLog
from mailplane.net.tls import server_ssl_context
from mailplane.policy.model import PolicySource
from mailplane.smtp import replies
from mailplane.smtp.base import (
    SHUTDOWN_GRACE_SECONDS,
    EsmtpHandler,
    MailplaneSMTP,
    answer_data,
    checked_content,
    close_gracefully,
    declared_size,
    listener_gate,
    received_with,
    too_many_recipients,
)
from mailplane.smtp.protocol import protocol_description
from mailplane.smtp.replies import SmtpReply
from mailplane.smtp.role_mail import RoleMail, role_policy
from mailplane.smtp.srs_returns import Accepted, SrsReturns
from mailplane.smtp.transaction import Transaction

log = logging.getLogger(__name__)
#: Refusals any client can repeat at will are logged once a minute per kind (SPEC §8a).
_throttled = ThrottledLog(log)

LISTENER = "mx"


#: aiosmtpd's built-in AUTH mechanisms, all excluded on the MX (:meth:`MxHandler.
#: handle_EHLO`).
MX_AUTH_MECHANISMS = ("LOGIN", "PLAIN")


class MxHandler(EsmtpHandler):
    """aiosmtpd handler: ``handle_EHLO`` (:class:`~mailplane.smtp.base.EsmtpHandler`),
    ``handle_RCPT`` and ``handle_DATA``."""

    def __init__(self, settings: Settings, policy_cache: PolicySource,
                 delivery: LocalDelivery, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.policy_cache = policy_cache
        self.delivery = delivery
        self.srs: Srs = delivery.srs
        self.srs_returns = SrsReturns(settings, session_factory, delivery.clock,
                                      srs=delivery.srs, scan=delivery.scan)
        # postmaster@ / abuse@ of every hosted domain, to the operator (RFC 5321 §4.5.1).
        self.role_mail = RoleMail(settings, session_factory, delivery.clock,
                                  scan=delivery.scan)
        # Sender authentication (SPEC §8b), started at the first accepted RCPT.
        self.verifier = InboundVerifier(
            settings, hosted=lambda domain: policy_cache.snapshot.is_hosted_domain(domain))

    async def handle_EHLO(self, server: SMTP, session: SmtpSession, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        """No AUTH on the MX, even after STARTTLS: it takes mail for hosted addresses only
        and relays for nobody; customers authenticate on submission (SPEC §7).  An offer
        here would only invite password guessing on port 25 (aiosmtpd lists AUTH once
        TLS is up; :data:`MX_AUTH_MECHANISMS` are excluded, so AUTH gets 504)."""
        keywords = await super().handle_EHLO(server, session, envelope, hostname, responses)
        return [line for line in keywords if not line.startswith("250-AUTH")]

    def _begin_checks(self, session: SmtpSession, envelope: Transaction) -> None:
        """SPF can start once a recipient is accepted (never for a stranger's MAIL FROM
        alone); the checks end with the envelope (the transaction)."""
        if envelope.auth_checks is None:
            envelope.auth_checks = self.verifier.begin(
                envelope, peer_ip=_peer_ip(session), helo=session.host_name,
                mail_from=envelope.mail_from or "")

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Transaction,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if envelope.recipient_count >= self.settings.mx.max_recipients:
            return too_many_recipients(server, LISTENER)
        normalised = address.strip().lower()
        local_part, _, domain = normalised.rpartition("@")
        if self.srs_returns.is_srs_address(normalised):
            verdict = await self.srs_returns.rcpt(
                server, address=normalised,
                mail_from=(envelope.mail_from or "").strip().strip("<>").strip(),
                peer_ip=_peer_ip(session))
            if not isinstance(verdict, Accepted):
                return verdict.line
            self._begin_checks(session, envelope)
            envelope.accept_srs_return(address, normalised, rcpt_options,
                                       verdict.destinations)
            return replies.RCPT_OK.line
        snapshot = self.policy_cache.snapshot
        if not local_part or not domain or not snapshot.is_hosted_domain(domain):
            return replies.RELAY_DENIED.line
        policy = snapshot.lookup(normalised)
        if policy is None and (destination := self.role_mail.destination(local_part)):
            return await self._role_rcpt(session, envelope, address, normalised,
                                         rcpt_options, destination)
        if policy is None or not policy.accepts_mail:
            return replies.UNKNOWN_RECIPIENT.line
        if not await self.delivery.has_room(policy, declared_size(envelope.mail_options)):
            return replies.MAILBOX_FULL.line
        self._begin_checks(session, envelope)
        envelope.accept_hosted(address, normalised, policy, rcpt_options)
        return replies.RCPT_OK.line

    async def _role_rcpt(self, session: SmtpSession, envelope: Transaction, address: str,
                         normalised: str, rcpt_options: list[str],
                         destination: str) -> str:
        """A role address of a hosted domain (:mod:`mailplane.smtp.role_mail`): one copy
        per destination per transaction, charged to the client IP."""
        policy = None
        if self.delivery.is_hosted(destination):
            policy = self.policy_cache.snapshot.lookup(destination)
            if policy is None or not policy.accepts_mail:
                _throttled.error(("role_mail", "destination"), "mx.role_mailboxes sends "
                                 "%s to %s, which is not a hosted address", normalised,
                                 destination)
                return replies.ROLE_DESTINATION_MISSING.line
            if not await self.delivery.has_room(policy, declared_size(envelope.mail_options)):
                return replies.MAILBOX_FULL.line
        if destination not in envelope.role_destinations:
            refused = await self.role_mail.rcpt(address=normalised, destination=destination,
                                                peer_ip=_peer_ip(session))
            if refused is not None:
                return refused.line
        self._begin_checks(session, envelope)
        envelope.accept_role(address, normalised, rcpt_options, destination=destination,
                             policy=role_policy(policy) if policy is not None else None)
        return replies.RCPT_OK.line

    async def handle_DATA(
        self, server: SMTP, session: SmtpSession, envelope: Transaction
    ) -> str:
        return await answer_data(LISTENER, self._data(server, session, envelope))

    async def _data(self, server: SMTP, session: SmtpSession,
                    envelope: Transaction) -> SmtpReply:
        raw, refused = await checked_content(server, envelope, self.settings, LISTENER)
        if refused is not None:
            return refused
        recipients = list(envelope.hosted_recipients.items())
        srs_returns = envelope.srs_returns
        role_forwards = dict(envelope.role_forwards)
        if not recipients and not srs_returns and not role_forwards:
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
        refused = await self.srs_returns.data(ctx, srs_returns)
        if refused is None and envelope.role_destinations:
            refused = await self.role_mail.data(ctx)
        if refused is not None:
            return refused
        checks = envelope.auth_checks
        if checks is not None:
            ctx.auth = await checks.finish(ctx)
            # Our header on top, forged ones gone.  The parsed header view stays the one
            # of the message as received (parsing it again would cost as much as the
            # checks): nothing reads Authentication-Results from it, engines get ``auth``.
            ctx.raw = self.verifier.stamp(raw, ctx.auth, ctx)
        await self.delivery.deliver(
            ctx, recipients, protocol=received_with(server, session, envelope),
            listener=LISTENER, srs_returns=list(srs_returns), role_forwards=role_forwards)
        return replies.MESSAGE_ACCEPTED


def _peer_ip(session: SmtpSession) -> str | None:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


class MxServer:
    """A running MX listener on the current event loop."""

    def __init__(self, server: GatedServer, handler: MxHandler,
                 protocols: weakref.WeakSet[SMTP], *, owns_delivery: bool,
                 counts: NodeCounts | None = None) -> None:
        self._server = server
        self.handler = handler
        self._protocols = protocols
        self._owns_delivery = owns_delivery
        self._counts = counts

    @property
    def port(self) -> int:
        return self._server.port

    async def aclose(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Graceful stop: see :func:`~mailplane.smtp.base.close_gracefully`."""
        await close_gracefully([self._server], self._protocols, grace_seconds=grace_seconds)
        if self._counts is not None:
            self._counts.close()
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
    ssl_context: ssl.SSLContext | None = None,
    node_counts: Path | None = None,
) -> MxServer:
    """Listen on ``settings.mx.host:port`` (port 0 = any free port) inside the running loop.

    ``delivery`` is the node's :class:`LocalDelivery` (shared with submission and the
    queue); without one, a private one is built from the given engines and closed with
    the listener (tests that start a lone MX).  STARTTLS (``mx.starttls``) uses
    ``ssl_context``, by default :func:`mailplane.net.tls.server_ssl_context` (the node's
    certificate, self-signed if none is configured).  ``node_counts``: the node's shared
    connection counts file (:mod:`mailplane.net.anvil`) when it runs several MX
    processes, so the connection limits hold for the node, not for each process."""
    loop = asyncio.get_running_loop()
    if ssl_context is None and settings.mx.starttls:
        ssl_context = await asyncio.to_thread(server_ssl_context, settings)
    tls_context = ssl_context if settings.mx.starttls else None
    owns_delivery = delivery is None
    if delivery is None:
        delivery = LocalDelivery(
            settings, session_factory, clock,
            scanner=Scanner(virus_engine, spam_engine, virus=settings.virus,
                            spam=settings.spam),
            srs=srs if srs is not None else srs_from_settings(settings, clock),
            policy=policy_cache)
    handler = MxHandler(settings, policy_cache, delivery, session_factory)
    protocols: weakref.WeakSet[SMTP] = weakref.WeakSet()
    counts = None
    if node_counts is not None:
        try:
            counts = NodeCounts(node_counts)
        except (OSError, ValueError, RuntimeError) as exc:
            log.error("MX connection limits are counted in this process only: %s", exc)
    gate, session_limits = listener_gate(LISTENER, settings.mx, settings, protocols,
                                         counts=counts)

    def factory() -> SMTP:
        protocol = MailplaneSMTP(
            handler,
            session_limits=session_limits,
            limiter=gate.limiter,
            data_size_limit=settings.mx.max_message_size,
            enable_SMTPUTF8=True,
            hostname=settings.mx.hostname,
            ident="mailplane",
            tls_context=tls_context,
            auth_exclude_mechanism=MX_AUTH_MECHANISMS,
            loop=loop,
        )
        protocol.normalise_bare_lf = settings.mx.bare_newline == "normalize"
        protocols.add(protocol)
        return protocol

    try:
        server = await start_gated_server(
            factory, listener=LISTENER, host=settings.mx.host, port=settings.mx.port,
            gate=gate, backlog=settings.mx.listen_backlog,
            reuse_port=settings.mx.workers > 1)
    except BaseException:
        if counts is not None:
            counts.close()
        raise
    log.info("MX listening on %s:%d (at most %d sessions, %d per client IP, counted %s;"
             " STARTTLS %s); protocol: %s", settings.mx.host, server.port,
             settings.mx.max_connections, settings.mx.max_connections_per_ip,
             "for the node" if counts is not None else "in this process",
             "on" if tls_context else "off", protocol_description())
    return MxServer(server, handler, protocols, owns_delivery=owns_delivery, counts=counts)
