"""The inbound MX service (SPEC §3, §4, §8; DESIGN "A message through the MX service").

RCPT is a dict hit on the policy snapshot.  DATA: refuse bare CR/LF (SMTP smuggling,
RFC 5321 §2.3.8), scan once per engine, run the filter pipeline per recipient, persist
everything in a thread, and only then answer 250.  Any unexpected failure answers
``451 4.3.0`` with nothing half-stored.

Bare line endings: aiosmtpd 1.4.6 reads DATA with ``readuntil(b"\\r\\n")`` and ends it
only on an exact ``.\\r\\n`` line, so ``\\n.\\n``, ``\\n.\\r\\n`` or ``\\r.\\r`` never end
the message here; they arrive *inside* the content and the handler refuses the whole
message with ``550 5.6.0`` so no downstream MTA can split it later.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.clock import Clock
from mailplane.delivery.maildir import MaildirUsage
from mailplane.delivery.quota_notice import over_threshold, update_quota_notice
from mailplane.delivery.rewrite import delivered_copy
from mailplane.delivery.store import DeliveryPlan, InboxWrite, QuarantineWrite
from mailplane.delivery.virus_report import build_virus_report, find_infected_parts
from mailplane.delivery.writer import DeliveryWriter
from mailplane.filters.base import RecipientDecision, ScanResults
from mailplane.filters.engines.base import (
    ScannerUnavailable,
    SpamEngine,
    SpamScanResult,
    VirusEngine,
    VirusScanResult,
)
from mailplane.filters.pipeline import PipelineOptions, decide
from mailplane.message import MessageContext, has_bare_line_ending
from mailplane.outbound.auto_reply import reply_subject
from mailplane.outbound.forwarding import plan_forward
from mailplane.outbound.recent_replies import RecentReplies
from mailplane.outbound.srs import Srs, SrsError, srs_from_settings
from mailplane.outbound.staging import auto_reply_job, forward_job, srs_return_job
from mailplane.policy import AddressPolicy, PolicyCache
from mailplane.settings import Settings
from mailplane.smtp import replies
from mailplane.smtp.fast_protocol import FastSMTP
from mailplane.smtp.replies import SmtpReply

log = logging.getLogger(__name__)

LISTENER = "mx"
_SCAN_ERRORS = (ScannerUnavailable, TimeoutError, OSError)


_STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def content_refusal(raw: bytes, max_size: int) -> SmtpReply | None:
    """The refusal every listener gives a message's bytes before any other work: bare CR
    or LF (SMTP smuggling, RFC 5321 §2.3.8) or over the size limit; None if acceptable."""
    if has_bare_line_ending(raw):
        return replies.BARE_LINE_ENDING
    if len(raw) > max_size:
        return replies.MESSAGE_TOO_BIG
    return None


async def answer_data(listener: str, work: Awaitable[SmtpReply]) -> str:
    """Run a listener's DATA work and turn any failure into its 4xx (never a traceback to
    the client), counting the outcome and the DATA-to-reply latency per listener."""
    started = time.perf_counter()
    try:
        reply = await work
    except _TempFail as exc:
        reply = exc.reply
    except Exception as exc:
        reply = failure_reply(exc, listener)
    metrics.MESSAGES.labels(listener, metrics.outcome_of(reply.code)).inc()
    if reply.code < 300:
        metrics.DATA_LATENCY.labels(listener).observe(time.perf_counter() - started)
    return reply.line


def failure_reply(exc: BaseException, listener: str) -> SmtpReply:
    """The 4xx for an unexpected failure while receiving: a full disk or quota is
    ``452 4.3.1`` (RFC 3463 "mail system full"; the sender retries later), anything else
    ``451 4.3.0``.  The delivery writer removed every partial write before this runs."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_FULL_ERRNOS:
        log.error("%s delivery failed: storage full (%s); answering 452", listener,
                  exc.strerror)
        return replies.STORAGE_FULL
    log.error("%s delivery failed; answering 451", listener, exc_info=exc)
    return replies.TEMPORARY_FAILURE


class _TempFail(Exception):
    def __init__(self, reply: SmtpReply) -> None:
        super().__init__(reply.text)
        self.reply = reply


def declared_size(mail_options: list[str]) -> int:
    """The ``SIZE=`` the client declared at MAIL FROM (RFC 1870), or 0."""
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


@dataclass(frozen=True, slots=True)
class _Scan:
    results: ScanResults
    infected_parts: frozenset[int]


class MxHandler:
    """aiosmtpd handler: ``handle_RCPT`` and ``handle_DATA``."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        policy_cache: PolicyCache,
        clock: Clock,
        *,
        virus_engine: VirusEngine | None,
        spam_engine: SpamEngine | None,
        srs: Srs | None = None,
        on_outbound: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        # Built at start-up (reads or creates the node's SRS secret file once).
        self.srs = srs if srs is not None else srs_from_settings(settings, clock)
        self.on_outbound = on_outbound
        # Senders this process already answered within 24 h skip the ledger upsert.
        self.recent_replies = RecentReplies()
        # One thread persists every delivery of this process, in batches
        # (group commit, docs/performance.md).
        self.writer = DeliveryWriter(settings, session_factory)
        # Addresses known to be over the quota-notice threshold (to re-arm below it).
        self._notice_armed: dict[str, bool] = {}
        self.options = PipelineOptions(
            auto_reply_require_recipient_header=(
                settings.outbound.auto_reply_require_recipient_header
            )
        )
        self.session_factory = session_factory
        self.policy_cache = policy_cache
        self.clock = clock
        self.virus_engine = virus_engine
        self.spam_engine = spam_engine
        self.usage = MaildirUsage(settings.maildir_root)
        # Policies remembered at RCPT time (DESIGN step 1), per envelope.
        self._policies: weakref.WeakKeyDictionary[Envelope, dict[str, AddressPolicy]] = (
            weakref.WeakKeyDictionary()
        )
        # Bounces to our SRS addresses (SPEC §5): sent on to the original sender.
        self._srs_returns: weakref.WeakKeyDictionary[Envelope, list[str]] = (
            weakref.WeakKeyDictionary()
        )

    # --- RCPT ---------------------------------------------------------------------------

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
            try:
                self.srs.reverse(normalised)
            except SrsError as exc:
                log.info("refused SRS address %s: %s", normalised, exc)
                return replies.UNKNOWN_RECIPIENT.line
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
        # Suspended addresses still receive (003 Art.20(3)); only the quota can defer.
        used = await self._mailbox_usage(normalised)
        if used >= policy.quota_bytes or (
            used + declared_size(envelope.mail_options) > policy.quota_bytes
        ):
            return replies.MAILBOX_FULL.line
        remembered = self._policies.setdefault(envelope, {})
        if normalised not in remembered:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        remembered[normalised] = policy
        return replies.RCPT_OK.line

    # --- DATA ---------------------------------------------------------------------------

    async def handle_DATA(
        self, server: SMTP, session: SmtpSession, envelope: Envelope
    ) -> str:
        return await answer_data(LISTENER, self._data(session, envelope))

    async def _data(self, session: SmtpSession, envelope: Envelope) -> SmtpReply:
        raw = envelope.original_content or b""
        refused = content_refusal(raw, self.settings.mx.max_message_size)
        if refused is not None:
            return refused
        policies = list(self._policies.get(envelope, {}).items())
        srs_returns = self._srs_returns.get(envelope, [])
        if not policies and not srs_returns:
            return replies.NO_VALID_RECIPIENTS
        now = self.clock.now()
        peer = session.peer
        ctx = MessageContext(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(address for address, _ in policies),
            raw=raw,
            received_at=now,
            peer_ip=str(peer[0]) if isinstance(peer, tuple) and peer else None,
            helo=session.host_name or None,
            queue_id=secrets.token_hex(8),
        )
        plan = await self.plan_local_delivery(ctx, policies, esmtp=bool(session.extended_smtp))
        if isinstance(plan, SmtpReply):
            return plan
        for srs_recipient in srs_returns:
            plan.outbound.append(srs_return_job(
                srs=self.srs, srs_recipient=srs_recipient,
                envelope_sender=ctx.envelope_sender, raw=raw,
            ))
        staged = await self.writer.persist(plan, now=now)
        self.record_delivered(plan, staged_jobs=staged)
        await self.quota_notices(plan, [policy for _, policy in policies], now=now)
        return replies.MESSAGE_ACCEPTED

    async def plan_local_delivery(
        self,
        ctx: MessageContext,
        policies: list[tuple[str, AddressPolicy]],
        *,
        esmtp: bool,
    ) -> DeliveryPlan | SmtpReply:
        """Scan, run the pipeline for each hosted recipient and check quotas; the caller
        persists the plan.  Shared with submission (DESIGN: "Submission runs the same
        machinery"), so a customer's mail to a neighbour is filtered by the neighbour's own
        settings.  Returns a reply instead when the message must be deferred."""
        try:
            scan = await self._scan(ctx, [policy for _, policy in policies])
        except _TempFail as exc:
            return exc.reply
        plan = DeliveryPlan()
        for address, policy in policies:
            self._plan_recipient(ctx, address, policy, scan, plan, esmtp=esmtp)
        for write in plan.inbox:
            used = await self._mailbox_usage(write.address)
            policy = dict(policies)[write.address]
            if used + len(write.data) > policy.quota_bytes:
                return replies.MAILBOX_FULL
        return plan

    async def _mailbox_usage(self, address: str) -> int:
        """Bytes in the mailbox: the cached figure on the loop, a directory scan in a
        thread only when that figure is stale."""
        used = self.usage.cached(address)
        if used is None:
            used = await asyncio.to_thread(self.usage.used, address)
        return used

    def record_delivered(self, plan: DeliveryPlan, *, staged_jobs: int = 0) -> None:
        """After the writer persisted the plan: account inbox writes in the quota cache
        and nudge the outbound worker when jobs were queued."""
        for write in plan.inbox:
            self.usage.add(write.address, len(write.data))
        if staged_jobs and self.on_outbound is not None:
            self.on_outbound()

    async def quota_notices(self, plan: DeliveryPlan, policies: list[AddressPolicy], *,
                            now: datetime) -> None:
        """SPEC §8: one notice when an inbox passes 90 % of its quota.  Only addresses at
        or over the threshold cost a thread hop; a failed notice never fails the mail."""
        quotas = {p.address: p.quota_bytes for p in policies}
        for address in {write.address for write in plan.inbox}:
            quota = quotas.get(address, 0)
            used = self.usage.cached(address)  # filled at RCPT; no I/O on the loop
            if used is None or (
                not over_threshold(used, quota) and not self._notice_armed.get(address)
            ):
                continue
            try:
                sent = await asyncio.to_thread(update_quota_notice, self.settings,
                                               address=address, used=used, quota=quota,
                                               now=now)
            except OSError as exc:
                log.warning("quota notice for %s not sent: %s", address, exc)
                continue
            self._notice_armed[address] = over_threshold(used, quota)
            if sent:
                self.usage.forget(address)

    def _received(self, ctx: MessageContext, recipient: str, *, esmtp: bool) -> str:
        """This hop's ``Received`` value (RFC 5321 §4.4), folded with CRLF + tab."""
        helo = ctx.helo or "unknown"
        return (
            f"from {helo} ([{ctx.peer_ip or 'unknown'}])\r\n"
            f"\tby {self.settings.mx.hostname} (mailplane) with {'ESMTP' if esmtp else 'SMTP'}"
            f" id {ctx.queue_id}\r\n"
            f"\tfor <{recipient}>; {format_datetime(ctx.received_at.astimezone(self.settings.tz))}"
        )

    def _trace(
        self, ctx: MessageContext, recipient: str, verdict: str, *, esmtp: bool,
        return_path: str | None = None,
    ) -> list[tuple[str, str]]:
        received = self._received(ctx, recipient, esmtp=esmtp)
        sender = ctx.envelope_sender if return_path is None else return_path
        return [
            ("Return-Path", f"<{sender}>"),
            ("Delivered-To", recipient),
            ("X-Mailplane-Verdict", verdict),
            ("Received", received),
        ]

    def _plan_recipient(
        self,
        ctx: MessageContext,
        address: str,
        policy: AddressPolicy,
        scan: _Scan,
        plan: DeliveryPlan,
        *,
        esmtp: bool,
    ) -> None:
        decision = decide(ctx, policy, scan.results, options=self.options)
        for hit in decision.hits:
            metrics.FILTER_HITS.labels(LISTENER, hit).inc()
        if decision.virus_report:
            metrics.RECIPIENT_DECISIONS.labels(LISTENER, "virus_report").inc()
            signature = scan.results.virus.signature if scan.results.virus else ""
            report = build_virus_report(
                self.settings, ctx=ctx, recipient=address, signature=signature,
                infected_parts=scan.infected_parts, now=ctx.received_at,
            )
            trace = self._trace(ctx, address, decision.trace(), esmtp=esmtp, return_path="")
            self._deliver_and_forward(ctx, address, decision, plan, esmtp=esmtp,
                                      inbox_copy=delivered_copy(report, trace=trace),
                                      forward_source=report)
            return
        metrics.RECIPIENT_DECISIONS.labels(LISTENER, decision.disposition).inc()
        data = delivered_copy(
            ctx.raw,
            trace=self._trace(ctx, address, decision.trace(), esmtp=esmtp),
            tag_subject=decision.tag_subject,
        )
        if decision.disposition != "quarantine":
            self._deliver_and_forward(ctx, address, decision, plan, esmtp=esmtp,
                                      inbox_copy=data, forward_source=ctx.raw)
            return
        if decision.disposition == "quarantine":
            plan.quarantine.append(
                QuarantineWrite(
                    address=address,
                    data=data,
                    sender=ctx.envelope_sender,
                    header_from=", ".join(ctx.header_from_addresses),
                    subject=ctx.subject or "",
                    reason=decision.quarantine_reason or "spam",
                )
            )

    def _deliver_and_forward(
        self,
        ctx: MessageContext,
        address: str,
        decision: RecipientDecision,
        plan: DeliveryPlan,
        *,
        esmtp: bool,
        inbox_copy: bytes,
        forward_source: bytes,
    ) -> None:
        """Inbox copy, forwards (SPEC §5) and the auto-reply (SPEC §6) of inbox mail.

        The forwarded copy is the message as received — no ``[spam]`` subject rewrite, so
        DKIM survives — with the envelope sender SRS-rewritten.  Keep-copy OFF drops the
        inbox copy only when a forward is really queued (a loop keeps it, never loses it).
        """
        forward = None
        if decision.forward_to:
            forward = plan_forward(
                raw=forward_source, headers=ctx.headers, address=address,
                destinations=decision.forward_to, envelope_sender=ctx.envelope_sender,
                received=self._received(ctx, address, esmtp=esmtp), srs=self.srs,
                max_hops=self.settings.outbound.max_hops,
            )
        if forward is not None:
            plan.outbound.append(forward_job(forward))
        if forward is None or decision.keep_copy:
            plan.inbox.append(InboxWrite(address, inbox_copy))
        if decision.auto_reply_body is not None and not self.recent_replies.replied_recently(
            address, ctx.envelope_sender, ctx.received_at
        ):
            plan.outbound.append(auto_reply_job(
                settings=self.settings, address=address, sender=ctx.envelope_sender,
                original_headers=ctx.headers, body=decision.auto_reply_body,
                # Decoded from the raw header line: 8-bit UTF-8 subjects survive.
                subject=reply_subject(ctx.subject),
                now=ctx.received_at, recent=self.recent_replies,
                envelope_from_address=self.settings.outbound.auto_reply_envelope_sender
                == "address",
            ))

    # --- engines (I/O, before the pipeline) ----------------------------------------------

    async def _scan(self, ctx: MessageContext, policies: list[AddressPolicy]) -> _Scan:
        virus: VirusScanResult | None = None
        virus_unavailable = False
        infected_parts: frozenset[int] = frozenset()
        settings = self.settings
        if self.virus_engine is not None and any(p.virus_check for p in policies):
            try:
                virus = await asyncio.wait_for(
                    self.virus_engine.scan(ctx.raw), settings.virus.timeout_seconds
                )
                if virus.infected:
                    infected_parts = await find_infected_parts(
                        self.virus_engine, ctx.raw,
                        per_part_seconds=settings.virus.timeout_seconds,
                    )
            except _SCAN_ERRORS as exc:
                log.warning("virus scanner %s unavailable: %s", self.virus_engine.name, exc)
                if virus is not None and virus.infected:
                    infected_parts = frozenset()  # remove every leaf part instead
                elif settings.virus.on_error == "tempfail":
                    raise _TempFail(replies.SCANNER_UNAVAILABLE) from None
                else:
                    virus_unavailable = True
        spam: SpamScanResult | None = None
        spam_unavailable = False
        if self.spam_engine is not None and any(p.spam_judge for p in policies):
            try:
                spam = await asyncio.wait_for(
                    self.spam_engine.check(ctx.raw, client_ip=ctx.peer_ip, helo=ctx.helo,
                                           headers=ctx.headers),
                    settings.spam.timeout_seconds,
                )
            except _SCAN_ERRORS as exc:
                log.warning("spam engine %s unavailable: %s", self.spam_engine.name, exc)
                if settings.spam.on_error == "tempfail":
                    raise _TempFail(replies.SCANNER_UNAVAILABLE) from None
                spam_unavailable = True
        return _Scan(
            ScanResults(
                virus=virus,
                virus_unavailable=virus_unavailable,
                spam=spam,
                spam_unavailable=spam_unavailable,
            ),
            infected_parts,
        )


# --- server ---------------------------------------------------------------------------


class MxSMTP(FastSMTP):
    """aiosmtpd's SMTP with its built-in size refusals spoken as our named reply.

    aiosmtpd itself answers an oversize MAIL FROM SIZE= or DATA with its own 552 texts;
    every reply mailplane sends comes from :mod:`mailplane.smtp.replies`.
    """

    _OWN_SIZE_REPLIES = ("552 Error: Too much mail data",
                         "552 Error: message size exceeds fixed maximum message size")

    in_data = False
    shutting_down = False
    _data_done: asyncio.Event | None = None

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and status.startswith(self._OWN_SIZE_REPLIES):
            await super().push(replies.MESSAGE_TOO_BIG.line)
            return
        await super().push(status)

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

    async def data_finished(self) -> None:
        if self.in_data and self._data_done is not None:
            await self._data_done.wait()

    def say_shutting_down(self) -> None:
        """``421 4.3.2`` and close (RFC 5321 §3.8); ``close()`` flushes the write first."""
        transport: Any = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(replies.SHUTTING_DOWN.line.encode() + b"\r\n")
            transport.close()


#: How long a stopping listener waits for transactions in DATA (SPEC §8: a message being
#: received when SIGTERM arrives still gets its 250; nothing accepted is dropped).
SHUTDOWN_GRACE_SECONDS = 30.0


async def close_gracefully(
    servers: list[asyncio.Server], protocols: weakref.WeakSet[SMTP],
    *, grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
) -> None:
    """Stop listening; idle sessions get 421 now; sessions in DATA finish (bounded by
    ``grace_seconds``) and get 421 after their reply; whatever is left is then closed."""
    for server in servers:
        server.close()
    for protocol in list(protocols):
        if isinstance(protocol, MxSMTP):
            protocol.shutting_down = True
            if not protocol.in_data:
                protocol.say_shutting_down()
    in_flight = [asyncio.create_task(p.data_finished()) for p in list(protocols)
                 if isinstance(p, MxSMTP) and p.in_data]
    if in_flight:
        _done, pending = await asyncio.wait(in_flight, timeout=grace_seconds)
        for task in pending:
            task.cancel()
    for protocol in list(protocols):
        transport: Any = protocol.transport
        if transport is not None:
            if isinstance(protocol, MxSMTP) and protocol.in_data:
                log.warning("closing a session still in DATA after %.0f s", grace_seconds)
            transport.close()
    for server in servers:
        await server.wait_closed()


class MxServer:
    """A running MX listener on the current event loop."""

    def __init__(self, server: asyncio.Server, handler: MxHandler,
                 protocols: weakref.WeakSet[SMTP]) -> None:
        self._server = server
        self.handler = handler
        self._protocols = protocols

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    async def aclose(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Graceful stop (issue 7): see :func:`close_gracefully`."""
        await close_gracefully([self._server], self._protocols, grace_seconds=grace_seconds)
        await self.handler.writer.aclose()


async def start_mx(
    settings: Settings,
    session_factory: sessionmaker[Session],
    policy_cache: PolicyCache,
    clock: Clock,
    *,
    virus_engine: VirusEngine | None,
    spam_engine: SpamEngine | None,
    srs: Srs | None = None,
    on_outbound: Callable[[], None] | None = None,
) -> MxServer:
    """Listen on ``settings.mx.host:port`` (port 0 = any free port) inside the running loop
    (so it shares the loop with the API), with aiosmtpd's SMTP as the protocol."""
    loop = asyncio.get_running_loop()
    handler = MxHandler(
        settings, session_factory, policy_cache, clock,
        virus_engine=virus_engine, spam_engine=spam_engine,
        srs=srs,
        on_outbound=on_outbound,
    )
    protocols: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory() -> SMTP:
        protocol = MxSMTP(
            handler,
            data_size_limit=settings.mx.max_message_size,
            enable_SMTPUTF8=True,
            hostname=settings.mx.hostname,
            ident="mailplane",
            loop=loop,
        )
        protocols.add(protocol)
        return protocol

    server = await loop.create_server(
        factory, host=settings.mx.host, port=settings.mx.port,
        reuse_port=settings.mx.workers > 1,
    )
    log.info("MX listening on %s:%d", settings.mx.host,
             server.sockets[0].getsockname()[1])
    return MxServer(server, handler, protocols)
