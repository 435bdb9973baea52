"""SMTP submission for customers' mail clients (SPEC §1, §3, §7; RFC 6409; issue 5): the
handler both listeners share.  The protocol (AUTH, TLS rules) is
:mod:`mailplane.smtp.submission_protocol`, the two listeners (STARTTLS and implicit TLS)
:mod:`mailplane.smtp.submission_server`.

- **AUTH** PLAIN/LOGIN (RFC 4954) with the POP account or the full address; the shared
  :class:`~mailplane.auth.credentials.Authenticator` verifies argon2 in a thread under the
  brute-force guard.  aiosmtpd 1.4.6 calls its authenticator synchronously, so
  :class:`SubmissionSMTP` lets aiosmtpd parse the exchange and then *awaits* the check.
- **Connections**: both listeners share one gate (SPEC §8a): connection limits per
  listener and per client IP, the implicit-TLS handshake only after admission, and the
  session defences of :mod:`mailplane.smtp.guarded`.
- **MAIL FROM**: the sender must be the authenticated address (553 5.7.1), the address must
  not be suspended, and the overseas-send window (SPEC §7) is decided from the peer's country;
  an account or IP already over its hourly quota gets ``451 4.7.1`` (SPEC §8a).
- **RCPT**: at most ``submission.max_recipients_per_message`` (``452 4.5.3``).
- **DATA**: the content check of the MX (:func:`~mailplane.smtp.base.checked_content`: a
  bare LF normalised to CRLF, a bare CR and the MIME bounds refused); header From, Sender,
  Resent-From and Resent-Sender must be the authenticated address;
  the *sender's* virus-check setting decides the scan (infected → 554 5.7.1, scanner down →
  451 unless ``virus.on_error = accept``); the message is charged against the sending
  quotas (:mod:`mailplane.auth.send_quota`: ``451 4.7.1`` over them, refunded if delivery
  fails); a ``Received … with ESMTPSA`` line (RFC 3848; UTF8SMTPSA for SMTPUTF8, RFC 6531;
  never the login name) and a missing Message-ID/Date are added (RFC 6409 §8.2, §8.3);
  every ``Authentication-Results`` claiming our authserv-id is removed (RFC 8601 §5,
  :func:`mailplane.mailauth.header.remove_ours`, as on the MX): a customer's message
  must not tell the hosted recipient, or a remote one, that we verified ``dmarc=pass``.
- **Routing**: hosted recipients are delivered by the node's
  :class:`~mailplane.delivery.local.LocalDelivery` with their own settings; every other
  recipient goes into one outbound job, committed in the same transaction as the local
  deliveries, and everything is durable before ``250``; any failure leaves nothing behind
  (SPEC §8).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from email.utils import format_datetime, make_msgid

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from mailplane import metrics
from mailplane.auth.send_quota import QuotaExceeded, SendQuota
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.jobs import PendingJob
from mailplane.delivery.local import LocalDelivery
from mailplane.filters.geo import CountryLookup
from mailplane.filters.overseas_window import OverseasRule
from mailplane.filters.scan import ScanDeferred
from mailplane.filters.sender_ownership import (
    SENDER_HEADERS,
    envelope_sender_owned,
    foreign_sender_header,
    header_from_owned,
)
from mailplane.mail.message import MessageContext
from mailplane.mail.trace import printable, received
from mailplane.mailauth import header
from mailplane.net.throttled_log import ThrottledLog
from mailplane.policy.model import AddressPolicy, PolicySource
from mailplane.smtp import replies
from mailplane.smtp.base import (
    EsmtpHandler,
    answer_data,
    checked_content,
    received_with,
    too_many_recipients,
)
from mailplane.smtp.replies import SmtpReply
from mailplane.smtp.submission_protocol import AuthenticatedUser, SubmissionSMTP, peer_ip_of
from mailplane.smtp.transaction import Transaction

log = logging.getLogger(__name__)
#: Refusals an authenticated client (or a thief with its password) can repeat at will:
#: once a minute per account and kind (SPEC §8a).
_throttled = ThrottledLog(log)

LISTENER = "submission"
OUTBOUND_KIND = "submission"
# --- the handler ----------------------------------------------------------------------


def _user(session: SmtpSession) -> AuthenticatedUser | None:
    data = session.auth_data if session.authenticated else None
    return data if isinstance(data, AuthenticatedUser) else None


class SubmissionHandler(EsmtpHandler):
    """aiosmtpd handler: ``handle_EHLO`` (:class:`~mailplane.smtp.base.EsmtpHandler`),
    ``handle_MAIL``, ``handle_RCPT``, ``handle_DATA``."""

    def __init__(
        self,
        settings: Settings,
        policy_cache: PolicySource,
        clock: Clock,
        *,
        country_lookup: CountryLookup,
        delivery: LocalDelivery,
        quota: SendQuota,
    ) -> None:
        self.settings = settings
        self.policy_cache = policy_cache
        self.clock = clock
        self.country_lookup = country_lookup
        self.delivery = delivery
        self.quota = quota
        self.overseas = OverseasRule.from_settings(settings.overseas, settings.webmail.networks)
        self.authserv_id = header.node_authserv_id(settings)

    async def handle_EHLO(self, server: SMTP, session: SmtpSession, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        """The EHLO keywords, and ``XCLIENT ADDR`` to a webmail host over TLS (Roundcube
        sends it only when listed, :mod:`~mailplane.smtp.submission_protocol`)."""
        keywords = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if isinstance(server, SubmissionSMTP) and server.offers_xclient:
            keywords.insert(len(keywords) - 1, "250-XCLIENT ADDR")
        return keywords

    # --- MAIL ---------------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Transaction,
        address: str,
        mail_options: list[str],
    ) -> str:
        user = _user(session)
        if user is None:
            return replies.AUTH_REQUIRED.line
        if not envelope_sender_owned(authenticated=user.address, mail_from=address):
            _throttled.info(("sender_not_owned", user.pop_account),
                            "submission: %s tried to send as another sender", user.pop_account)
            return replies.SENDER_NOT_OWNED.line
        policy = self.policy_cache.snapshot.lookup(user.address)
        if policy is None or not policy.accepts_logins:
            return replies.SENDER_SUSPENDED.line
        refusal = self._overseas_refusal(user, policy, peer_ip_of(session))
        if refusal is not None:
            return refusal.line
        if await self.quota.exhausted(account=user.pop_account, peer_ip=peer_ip_of(session)):
            return replies.SENDING_RATE_LIMITED.line
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK.line

    def _overseas_refusal(
        self, user: AuthenticatedUser, policy: AddressPolicy, peer_ip: str
    ) -> SmtpReply | None:
        """SPEC §7.  The lookup is an in-memory search (microseconds), so it runs here."""
        country = None if self.overseas.is_trusted(peer_ip) else self.country_lookup.country(
            peer_ip
        )
        verdict = self.overseas.decide(
            peer_ip=peer_ip, country=country, policy=policy, now=self.clock.now()
        )
        if verdict.reason == "unknown_country_allowed":
            _throttled.info(("unknown_country", user.pop_account), "submission: %s from %s:"
                            " country unknown, allowed by configuration", user.pop_account,
                            peer_ip)
        if verdict.allowed:
            return None
        metrics.OVERSEAS_REFUSALS.labels(verdict.country or "unknown").inc()
        _throttled.warning(("overseas", user.pop_account), "submission: overseas send refused"
                           " for %s from %s (country %s, %s)", user.pop_account, peer_ip,
                           verdict.country or "unknown", verdict.reason)
        return replies.OVERSEAS_SEND_REFUSED

    # --- RCPT ---------------------------------------------------------------------------

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Transaction,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if envelope.recipient_count >= self.settings.submission.max_recipients_per_message:
            return too_many_recipients(server, LISTENER)
        normalised = address.strip().lower()
        local_part, _, domain = normalised.rpartition("@")
        if not local_part or not domain:
            return replies.RECIPIENT_NEEDS_DOMAIN.line
        snapshot = self.policy_cache.snapshot
        if snapshot.is_hosted_domain(domain):
            policy = snapshot.lookup(normalised)
            if policy is None or not policy.accepts_mail:
                return replies.UNKNOWN_RECIPIENT.line
            envelope.accept_hosted(address, normalised, policy, rcpt_options)
        else:
            envelope.accept_remote(address, normalised, rcpt_options)
        return replies.RCPT_OK.line

    # --- DATA ---------------------------------------------------------------------------

    async def handle_DATA(
        self, server: SMTP, session: SmtpSession, envelope: Transaction
    ) -> str:
        return await answer_data(LISTENER, self._data(server, session, envelope))

    async def _data(self, server: SMTP, session: SmtpSession,
                    envelope: Transaction) -> SmtpReply:
        user = _user(session)
        if user is None:
            return replies.AUTH_REQUIRED
        raw, refused = await checked_content(server, envelope, self.settings, LISTENER)
        if refused is not None:
            return refused
        local = envelope.hosted_recipients
        remote = envelope.remote_recipients
        if not local and not remote:
            return replies.NO_VALID_RECIPIENTS
        sender_policy = self.policy_cache.snapshot.lookup(user.address)
        if sender_policy is None or not sender_policy.accepts_logins:
            return replies.SENDER_SUSPENDED
        now = self.clock.now()
        peer_ip = peer_ip_of(session)
        original = MessageContext(mail_from=envelope.mail_from or "", rcpt_tos=(), raw=raw,
                                  received_at=now, peer_ip=peer_ip)
        if not header_from_owned(authenticated=user.address,
                                 header_from=original.header_from_addresses):
            return replies.HEADER_FROM_NOT_OWNED
        foreign = foreign_sender_header(authenticated=user.address, present={
            name: original.header_addresses(name) for name in SENDER_HEADERS
            if original.raw_header(name)})
        if foreign is not None:
            _throttled.info(("foreign_header", user.pop_account), "submission: %s tried to "
                            "send with a foreign %s", user.pop_account, foreign)
            return replies.HEADER_SENDER_NOT_OWNED
        refusal = await self._virus_refusal(raw, sender_policy)
        if refusal is not None:
            return refusal
        try:
            charge = await self.quota.charge(account=user.pop_account, peer_ip=peer_ip,
                                             recipients=envelope.recipient_count)
        except QuotaExceeded:
            return replies.SENDING_RATE_LIMITED
        queue_id = secrets.token_hex(8)
        helo = printable(session.host_name or "unknown")
        protocol = received_with(server, session, envelope)
        message = self._submitted_copy(original, helo=helo, peer_ip=peer_ip,
                                       protocol=protocol, queue_id=queue_id, now=now,
                                       account=user.pop_account)
        jobs = [] if not remote else [PendingJob(
            kind=OUTBOUND_KIND, mail_from=envelope.mail_from or user.address,
            recipients=list(remote), message=message)]
        ctx = MessageContext(mail_from=envelope.mail_from or "", rcpt_tos=tuple(local),
                             raw=message, received_at=now, peer_ip=peer_ip, helo=helo,
                             queue_id=queue_id)
        try:
            await self.delivery.deliver(ctx, list(local.items()),
                                        protocol=protocol, listener=LISTENER, extra_jobs=jobs)
        except Exception:
            # Deferred or failed: nothing was stored.  (A client that hangs up cancels us
            # while the writer may still store the message: no refund then, or hanging up
            # after each DATA would send without limit.)
            await self.quota.refund(charge)
            raise
        log.info("submission %s accepted from %s: %d local, %d remote recipients",
                 queue_id, user.pop_account, len(local), len(remote))
        return replies.MESSAGE_ACCEPTED

    async def _virus_refusal(self, raw: bytes, sender: AddressPolicy) -> SmtpReply | None:
        """SPEC §3: the sender's own setting decides; infected mail is never sent."""
        if not sender.virus_check:
            return None
        try:
            result = await self.delivery.scanner.virus_of(raw)
        except ScanDeferred:
            return replies.SCANNER_UNAVAILABLE
        if result is None or not result.infected:
            return None
        metrics.FILTER_HITS.labels(LISTENER, "virus").inc()
        signature = printable(result.signature, 100)
        _throttled.warning(("virus", sender.pop_account), "submission refused from %s: "
                           "virus %s", sender.pop_account, signature)
        if not signature:
            return replies.VIRUS_REFUSED
        return replies.VIRUS_REFUSED._replace(
            text=f"{replies.VIRUS_REFUSED.text} ({signature})"
        )

    def _submitted_copy(
        self,
        original: MessageContext,
        *,
        helo: str,
        peer_ip: str,
        protocol: str,
        queue_id: str,
        now: datetime,
        account: str,
    ) -> bytes:
        """The message as it leaves the MSA: our trace line first (RFC 5321 §4.4; "with
        ESMTPSA" or "UTF8SMTPSA" says TLS and AUTH, RFC 3848 / RFC 6531 — never the login:
        every recipient would learn the customer's POP account, SPEC §8b), plus Date and
        Message-ID if the client left them out (RFC 6409 §8.2, §8.3), without any
        ``Authentication-Results`` in our name (RFC 8601 §5: only the MX writes those).
        Done before the message is stored or queued, so the hosted recipients' copies, the
        queued job and the DKIM signature added when it leaves all see it without them."""
        hostname = self.settings.mx.hostname
        local_time = format_datetime(now.astimezone(self.settings.tz))
        lines = ["Received: " + received(
            helo=helo, peer_ip=peer_ip, hostname=hostname, protocol=protocol,
            queue_id=queue_id, recipient=None, at=now, tz=self.settings.tz)]
        if not original.raw_header("Date"):
            lines.append(f"Date: {local_time}")
        if not original.raw_header("Message-ID"):
            lines.append(f"Message-ID: {make_msgid(idstring=queue_id, domain=hostname)}")
        content = header.remove_ours(original.raw, self.authserv_id)
        if content is not original.raw:
            # A client that redirects ("resends") a message it received keeps our header
            # too; a forgery looks the same from here.  Either way it goes, quietly.
            _throttled.info(("authentication_results", account), "submission: removed an "
                            "Authentication-Results claiming %s from a message of %s",
                            self.authserv_id, account)
        return ("\r\n".join(lines) + "\r\n").encode("ascii") + content
