"""LocalDelivery: the node's one service that delivers a message to hosted recipients.

MX, submission and the outbound queue's local transport all call :meth:`deliver`:

1. **scan** — each engine at most once (:mod:`mailplane.filters.scan`); an engine that
   cannot answer under ``on_error = tempfail`` defers the message;
2. **plan** — each recipient's pipeline turned into writes and jobs
   (:mod:`mailplane.delivery.planner`);
3. **quota** — per recipient (:mod:`mailplane.delivery.mailbox_quota`): a copy that
   would overflow its mailbox (inbox + quarantine) is left out, the others go on; when
   every recipient is full the message is deferred (``4.2.2``);
4. **persist** — the plan handed to the process's one writer thread, which makes it
   durable in a batch with others (:mod:`mailplane.delivery.writer`, ``store``) after
   re-checking, in its transaction, that each recipient still exists;
5. **after** — each job's condition settled (the auto-reply's memory:
   :mod:`mailplane.filters.auto_reply_gate`), the outbound worker woken, the 90 %
   quota notice sent.

Nothing is stored unless everything is: a deferral or any failure leaves no trace, and the
caller answers 4xx (SMTP) or retries (queue).  Only when :meth:`deliver` returns is the
message durable (SPEC §8: the 250 comes after).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.forward_gate import ForwardGate
from mailplane.delivery.jobs import PendingJob
from mailplane.delivery.mailbox_quota import MailboxQuota
from mailplane.delivery.plan import DeliveryPlan, InboxWrite
from mailplane.delivery.planner import DeliveryPlanner, Recipients
from mailplane.delivery.writer import DeliveryWriter
from mailplane.filters.auto_reply_gate import AutoReplyGate
from mailplane.filters.base import ScanResults
from mailplane.filters.forwarding import reachable
from mailplane.filters.scan import ScanDeferred, Scanner
from mailplane.mail.message import MessageContext
from mailplane.mail.srs import Srs
from mailplane.policy.model import AddressPolicy, PolicySnapshot, PolicySource
from mailplane.rules.quota import fits

log = logging.getLogger(__name__)

DeferReason = Literal["mailbox_full", "scanner_unavailable"]


#: :meth:`LocalDelivery.scan`, as the MX's SRS returns and role mail are given it.
ScanFor = Callable[[MessageContext, Sequence[AddressPolicy]], Awaitable[ScanResults]]


class DeliveryDeferred(Exception):
    """Nothing was stored; the sender (or the queue) should try again later."""

    def __init__(self, reason: DeferReason) -> None:
        super().__init__(reason)
        self.reason: DeferReason = reason


class LocalDelivery:
    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        clock: Clock,
        *,
        scanner: Scanner,
        srs: Srs,
        policy: PolicySource | None = None,
        on_outbound: Callable[[], None] | None = None,
    ) -> None:
        """``policy`` tells which domains are hosted (the node's policy cache); without
        one, the configured base domains and their subdomains are."""
        self.settings = settings
        self.policy: PolicySource = policy or _BaseDomains(settings)
        self.clock = clock
        self.scanner = scanner
        self.srs = srs
        self.on_outbound = on_outbound
        self.quota = MailboxQuota(settings)
        # The auto-reply's effects: 24 h gate, caps, claim, release, remember.
        self.auto_replies = AutoReplyGate.from_settings(settings)
        self.planner = DeliveryPlanner(settings, srs, self.auto_replies, self.is_hosted,
                                       lookup=self.lookup)
        # Forwards leaving the platform: the hourly limit and the SRS record (issue 20).
        self.forward_gate = ForwardGate(settings, session_factory, clock)
        # One thread persists every delivery of this process, in batches (group commit).
        self.writer = DeliveryWriter(settings, session_factory)

    def is_hosted(self, address: str) -> bool:
        """Whether ``address`` is in a domain this platform hosts (delivered locally by the
        queue, whatever public DNS says)."""
        return self.policy.snapshot.is_hosted_domain(address.rpartition("@")[2])

    def lookup(self, address: str) -> AddressPolicy | None:
        return self.policy.snapshot.lookup(address)

    # --- quota ----------------------------------------------------------------------------

    async def has_room(self, policy: AddressPolicy, size: int = 0) -> bool:
        """SPEC §8 at RCPT: a full mailbox (or one the declared size would overflow)."""
        return await self.quota.has_room(policy, size)

    # --- delivery -------------------------------------------------------------------------

    async def scan(self, ctx: MessageContext,
                   policies: Sequence[AddressPolicy]) -> ScanResults:
        """The engines ``policies`` ask for, on ``ctx``; an engine that cannot answer
        under ``on_error = tempfail`` defers the delivery (:class:`DeliveryDeferred`: the
        MX answers 451, nothing stored).  Also what the MX scans SRS returns and role
        mail with before they are delivered."""
        try:
            return await self.scanner.scan(ctx, policies)
        except ScanDeferred:
            raise DeliveryDeferred("scanner_unavailable") from None

    async def deliver(
        self,
        ctx: MessageContext,
        recipients: Recipients,
        *,
        protocol: str,
        listener: str,
        extra_jobs: Sequence[PendingJob] = (),
        srs_returns: Sequence[str] = (),
        role_forwards: Mapping[str, str] | None = None,
    ) -> int:
        """Deliver ``ctx`` to ``recipients`` (and queue ``extra_jobs`` with it); return the
        number of outbound jobs queued.  Raises :class:`DeliveryDeferred`,
        :class:`~mailplane.delivery.plan.RecipientsGone`, or the error that stopped the
        writer — in every case with nothing stored.  ``role_forwards``: external
        destinations of role mailboxes -> the role address (:mod:`mailplane.smtp.
        role_mail`), each a forward job."""
        policies = [policy for _, policy in recipients]
        # The hosted addresses forwarding may reach: scanned for, and their room known.
        reach = reachable(policies, lookup=self.lookup, hosted=self.is_hosted,
                          limit=self.settings.forwarding.max_expansion)
        scan = await self.scan(ctx, policies + reach) if policies else ScanResults()
        used = {p.address: await self.quota.used(p.address) for p in reach}
        grace = self.quota.grace_percent
        plan = self.planner.plan(
            ctx, recipients, scan, protocol=protocol, listener=listener,
            srs_returns=srs_returns, role_forwards=role_forwards or {},
            room=lambda p, size: fits(used.get(p.address, 0), size, quota=p.quota_bytes,
                                      grace_percent=grace))
        plan.outbound.extend(extra_jobs)
        quota_of = self._quota_of({address: p.quota_bytes for address, p in recipients})
        # Only the transaction's own recipients can be left out (their sender is told);
        # an address reached by forwarding that had no room is already a held copy.
        admission = await self.quota.admit(plan, quota_of,
                                           only={address for address, _ in recipients})
        if admission.full:
            if plan.empty:  # every recipient is full: the sender retries (SPEC §8)
                raise DeliveryDeferred("mailbox_full")
            dsn = self.quota.overflow_dsn(ctx, admission.full, listener=listener)
            if dsn is not None:
                plan.outbound.append(dsn)
        charges = await self.forward_gate.admit(plan, now=ctx.received_at)
        try:
            staged = await self.writer.persist(plan, now=ctx.received_at)
        except BaseException:
            self.quota.give_back(admission, set(admission.reserved))
            await self.forward_gate.refund(charges)
            raise
        self.quota.give_back(admission, plan.gone)
        self._after_persist(plan, staged)
        await self.quota.notify(plan, {a: quota_of(a) for a in plan.copy_sizes()},
                                now=ctx.received_at)
        return staged

    def _quota_of(self, known: dict[str, int]) -> Callable[[str], int]:
        """The quota of an address: from ``known`` (the transaction's policies), else the
        node's snapshot, else the configured default."""
        def quota_of(address: str) -> int:
            if address in known:
                return known[address]
            policy = self.lookup(address)
            return (policy.quota_bytes if policy is not None
                    else self.settings.addresses.default_quota_bytes)
        return quota_of

    def _after_persist(self, plan: DeliveryPlan, staged_jobs: int) -> None:
        """The plan is durable: settle each job's condition (the auto-reply gate counts
        and remembers what the transaction decided) and nudge the outbound worker."""
        for job in plan.outbound:
            if job.condition is not None:
                job.condition.settle()
        if staged_jobs and self.on_outbound is not None:
            self.on_outbound()

    async def store_as_is(self, address: str, messages: Sequence[bytes], *,
                          now: datetime) -> None:
        """Store ``messages`` in ``address``'s inbox as they are — a copy that already went
        through its pipeline (held for room, or a forward that came back): no filters, no
        forwarding again.  :class:`DeliveryDeferred` when the mailbox has no room."""
        plan = DeliveryPlan(inbox=[InboxWrite(address, m) for m in messages])
        quota_of = self._quota_of({})
        admission = await self.quota.admit(plan, quota_of)
        if admission.full:
            raise DeliveryDeferred("mailbox_full")
        try:
            await self.writer.persist(plan, now=now)
        except BaseException:
            self.quota.give_back(admission, set(admission.reserved))
            raise
        self.quota.give_back(admission, plan.gone)
        self._after_persist(plan, 0)

    async def aclose(self) -> None:
        """Persist what is queued, then stop the writer thread."""
        await self.writer.aclose()


class _BaseDomains:
    """A policy source that knows only the configured base domains (no addresses): what
    a delivery built without the node's policy cache treats as hosted."""

    def __init__(self, settings: Settings) -> None:
        self.snapshot = PolicySnapshot(0, {}, {}, frozenset(), tuple(settings.base_domains))
