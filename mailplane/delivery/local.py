"""LocalDelivery: the node's one service that delivers a message to hosted recipients.

MX, submission and the outbound queue's local transport all call :meth:`deliver`:

1. **scan** — each engine at most once (:mod:`mailplane.filters.scan`); an engine that
   cannot answer under ``on_error = tempfail`` defers the message;
2. **plan** — each recipient's pipeline turned into writes and jobs
   (:mod:`mailplane.delivery.planner`);
3. **quota** — a copy that would overflow its mailbox defers the message (``4.2.2``);
4. **persist** — the plan handed to the process's one writer thread, which makes it
   durable in a batch with others (:mod:`mailplane.delivery.writer`, ``store``);
5. **after** — quota figures and the auto-reply memory updated from what was really
   stored, the outbound worker woken, the 90 % quota notice sent.

Nothing is stored unless everything is: a deferral or any failure leaves no trace, and the
caller answers 4xx (SMTP) or retries (queue).  Only when :meth:`deliver` returns is the
message durable (SPEC §8: the 250 comes after).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.forward_gate import ForwardGate
from mailplane.delivery.jobs import PendingJob
from mailplane.delivery.plan import DeliveryPlan, InboxWrite
from mailplane.delivery.planner import DeliveryPlanner, Recipients
from mailplane.delivery.writer import DeliveryWriter
from mailplane.filters.auto_reply import RecentReplies
from mailplane.filters.base import ScanResults
from mailplane.filters.forwarding import reachable
from mailplane.filters.scan import ScanDeferred, Scanner
from mailplane.mail.message import MessageContext
from mailplane.mail.srs import Srs
from mailplane.mailstore.maildir import MaildirUsage
from mailplane.notices.quota import over_threshold, update_quota_notice
from mailplane.policy.model import AddressPolicy, PolicySnapshot, PolicySource

log = logging.getLogger(__name__)

DeferReason = Literal["mailbox_full", "scanner_unavailable"]


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
        self.usage = MaildirUsage(settings.maildir_root)
        # Senders this process knows were answered within 24 h skip building a reply.
        self.recent_replies = RecentReplies()
        self.planner = DeliveryPlanner(settings, srs, self.recent_replies, self.is_hosted,
                                       lookup=self.lookup)
        # Forwards leaving the platform: the hourly limit and the SRS record (issue 20).
        self.forward_gate = ForwardGate(settings, session_factory, clock)
        # One thread persists every delivery of this process, in batches (group commit).
        self.writer = DeliveryWriter(settings, session_factory)
        # Addresses known to be over the quota-notice threshold (to re-arm below it).
        self._notice_armed: dict[str, bool] = {}

    def is_hosted(self, address: str) -> bool:
        """Whether ``address`` is in a domain this platform hosts (delivered locally by the
        queue, whatever public DNS says)."""
        return self.policy.snapshot.is_hosted_domain(address.rpartition("@")[2])

    def lookup(self, address: str) -> AddressPolicy | None:
        return self.policy.snapshot.lookup(address)

    # --- quota ----------------------------------------------------------------------------

    async def mailbox_usage(self, address: str) -> int:
        """Bytes in the mailbox: the cached figure on the loop, a directory scan in a
        thread only when that figure is stale."""
        used = self.usage.cached(address)
        if used is None:
            used = await asyncio.to_thread(self.usage.used, address)
        return used

    async def has_room(self, policy: AddressPolicy, size: int = 0) -> bool:
        """SPEC §8: a full mailbox (or one this message would overflow) defers mail."""
        used = await self.mailbox_usage(policy.address)
        return used < policy.quota_bytes and used + size <= policy.quota_bytes

    # --- delivery -------------------------------------------------------------------------

    async def deliver(
        self,
        ctx: MessageContext,
        recipients: Recipients,
        *,
        protocol: str,
        listener: str,
        extra_jobs: Sequence[PendingJob] = (),
        srs_returns: Sequence[str] = (),
    ) -> int:
        """Deliver ``ctx`` to ``recipients`` (and queue ``extra_jobs`` with it); return the
        number of outbound jobs queued.  Raises :class:`DeliveryDeferred`, or the error
        that stopped the writer — in both cases with nothing stored."""
        policies = [policy for _, policy in recipients]
        # The hosted addresses forwarding may reach: scanned for, and their room known.
        reach = reachable(policies, lookup=self.lookup, hosted=self.is_hosted,
                          limit=self.settings.forwarding.max_expansion)
        try:
            scan = (await self.scanner.scan(ctx, policies + reach) if policies
                    else ScanResults())
        except ScanDeferred:
            raise DeliveryDeferred("scanner_unavailable") from None
        used = {p.address: await self.mailbox_usage(p.address) for p in reach}
        plan = self.planner.plan(
            ctx, recipients, scan, protocol=protocol, listener=listener,
            srs_returns=srs_returns,
            room=lambda p, size: _fits(used.get(p.address), p.quota_bytes, size))
        plan.outbound.extend(extra_jobs)
        charges = await self.forward_gate.admit(plan, now=ctx.received_at)
        try:
            quotas = dict(recipients)
            for write in plan.inbox:
                policy = quotas.get(write.address)  # reached addresses: checked when planned
                if policy is not None and not await self.has_room(policy, len(write.data)):
                    raise DeliveryDeferred("mailbox_full")
            staged = await self.writer.persist(plan, now=ctx.received_at)
        except BaseException:
            await self.forward_gate.refund(charges)
            raise
        self._after_persist(plan, staged)
        await self._quota_notices(plan, policies, now=ctx.received_at)
        return staged

    def _after_persist(self, plan: DeliveryPlan, staged_jobs: int) -> None:
        """The plan is durable: count its inbox bytes, remember the ledger's answer to
        each reply claim, and nudge the outbound worker."""
        for write in plan.inbox:
            self.usage.add(write.address, len(write.data))
        for job in plan.outbound:
            claim = job.reply_claim
            if claim is None:
                continue
            at = claim.at if job.staged else job.ledger_reply_at
            if at is not None:
                self.recent_replies.remember(claim.address, claim.sender, at)
        if staged_jobs and self.on_outbound is not None:
            self.on_outbound()

    async def _quota_notices(self, plan: DeliveryPlan, policies: list[AddressPolicy], *,
                             now: datetime) -> None:
        """SPEC §8: one notice when an inbox passes 90 % of its quota.  Only addresses at
        or over the threshold cost a thread hop; a failed notice never fails the mail."""
        quotas = {p.address: p.quota_bytes for p in policies}
        for address in {write.address for write in plan.inbox}:
            quota = quotas.get(address, 0)
            used = self.usage.cached(address)  # filled before delivery; no I/O on the loop
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

    async def store_as_is(self, address: str, messages: Sequence[bytes], *,
                          now: datetime) -> None:
        """Store ``messages`` in ``address``'s inbox as they are — a copy that already went
        through its pipeline (held for room, or a forward that came back): no filters, no
        forwarding again.  :class:`DeliveryDeferred` when the mailbox has no room."""
        policy = self.lookup(address)
        size = sum(len(m) for m in messages)
        if policy is not None and not await self.has_room(policy, size):
            raise DeliveryDeferred("mailbox_full")
        plan = DeliveryPlan(inbox=[InboxWrite(address, m) for m in messages])
        await self.writer.persist(plan, now=now)
        self._after_persist(plan, 0)

    async def aclose(self) -> None:
        """Persist what is queued, then stop the writer thread."""
        await self.writer.aclose()


def _fits(used: int | None, quota: int, size: int) -> bool:
    return used is not None and used < quota and used + size <= quota


class _BaseDomains:
    """A policy source that knows only the configured base domains (no addresses): what
    a delivery built without the node's policy cache treats as hosted."""

    def __init__(self, settings: Settings) -> None:
        self.snapshot = PolicySnapshot(0, {}, {}, frozenset(), tuple(settings.base_domains))
