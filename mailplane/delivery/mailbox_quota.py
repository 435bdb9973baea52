"""The mailbox quota where mail is delivered (SPEC §8, §8a; issue 20 findings 7 and 8).
The admission rule itself is :func:`mailplane.rules.quota.fits`; here is who it is asked
for, when, and what follows.

- **What counts**: the whole mailbox — the inbox, the quarantine (the folder 迷惑メール)
  and the folders IMAP clients keep (:class:`MaildirUsage`) — as Dovecot counts a Junk
  folder and its quota plugin counts every folder: denied or spam mail cannot fill the
  disk past the address's quota.
- **RCPT** (:meth:`MailboxQuota.has_room`): a mailbox already full, or that the declared
  ``SIZE=`` would overflow, gets ``452 4.2.2`` for that recipient only; the others of
  the transaction go on.
- **DATA** (:meth:`MailboxQuota.admit`): each recipient's copies (inbox or quarantine)
  must fit; those that fit are reserved in the usage figure at once, before the copy is
  written, so parallel deliveries of this process see them (each process can pass a
  quota by at most the grace; given back if the delivery fails).  A recipient whose copy
  does not fit is left out as if its RCPT had been refused.  When that leaves nothing —
  every recipient full — the message gets ``452 4.2.2`` and nothing is stored (the
  sender retries).  Otherwise the others get the message (one full mailbox never refuses
  it for everyone) and the sender of the left-out copy gets a DSN (``5.2.2``,
  :meth:`MailboxQuota.overflow_dsn`) **only if we may answer it**: it authenticated (SPF
  pass or an aligned DKIM pass in ``MessageContext.auth``) or it is our own customer on
  submission.  A forged or unverified sender gets nothing (no backscatter): the copy is
  dropped with a throttled log line and ``mailplane_quota_overflows_total``.  Real MTAs
  declare ``SIZE=``, so for them this case is the RCPT refusal above.
- **The 90 % notice** (:meth:`MailboxQuota.notify`): one notice when inbox + quarantine
  pass 90 % of the quota, sent again only after usage fell below
  (:mod:`mailplane.notices.quota`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

from mailplane import metrics
from mailplane.config.settings import Settings
from mailplane.delivery.jobs import PendingJob
from mailplane.delivery.plan import DeliveryPlan
from mailplane.mail.dsn import FailedRecipient, build_dsn
from mailplane.mail.message import MessageContext
from mailplane.mailstore.maildir import MaildirUsage
from mailplane.net.throttled_log import ThrottledLog
from mailplane.notices.quota import over_threshold, update_quota_notice
from mailplane.policy.model import AddressPolicy
from mailplane.rules.quota import fits

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: The listener whose senders are our own authenticated customers (SPEC §1 submission).
SUBMISSION = "submission"


@dataclass(slots=True)
class Admission:
    """What :meth:`MailboxQuota.admit` decided for one plan."""

    #: Bytes reserved per address (given back if the copy is not stored after all).
    reserved: dict[str, int] = field(default_factory=dict)
    #: Addresses whose copy did not fit: left out of the plan.
    full: set[str] = field(default_factory=set)


class MailboxQuota:
    """One per :class:`~mailplane.delivery.local.LocalDelivery` (per process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.usage = MaildirUsage(settings.maildir_root, settings.quarantine_root)
        self.grace_percent = settings.addresses.quota_grace_percent
        # Addresses known to be over the notice threshold (to re-arm below it).
        self._notice_armed: dict[str, bool] = {}

    async def used(self, address: str) -> int:
        """Bytes in the mailbox, quarantine included: the cached figure on the loop, a
        directory scan in a thread only when that figure is stale."""
        used = self.usage.cached(address)
        if used is None:
            used = await asyncio.to_thread(self.usage.used, address)
        return used

    async def has_room(self, policy: AddressPolicy, size: int = 0) -> bool:
        """RCPT: may ``policy``'s mailbox take a message of ``size`` (declared) bytes?"""
        used = await self.used(policy.address)
        return fits(used, size, quota=policy.quota_bytes, grace_percent=self.grace_percent)

    async def admit(self, plan: DeliveryPlan, quota_of: Callable[[str], int], *,
                    only: Collection[str] | None = None) -> Admission:
        """DATA: reserve every address's copies that fit; the others are left out of
        ``plan`` (the caller decides between 452 and going on).  With ``only``, just those
        addresses may be left out; the others' copies (addresses reached by forwarding,
        whose room the planner already checked) are reserved as they are."""
        sizes = plan.copy_sizes()
        known = {address: await self.used(address) for address in sizes}
        admission = Admission()
        # No await from here on: check and reserve are one step on the event loop.
        for address, size in sizes.items():
            used = self.usage.cached(address)
            used = known[address] if used is None else used
            checked = only is None or address in only
            if not checked or fits(used, size, quota=quota_of(address),
                                   grace_percent=self.grace_percent):
                self.usage.add(address, size)
                admission.reserved[address] = size
            else:
                admission.full.add(address)
        if admission.full:
            plan.leave_out(admission.full)
        return admission

    def give_back(self, admission: Admission, addresses: set[str] | frozenset[str]) -> None:
        """Reservations of copies that were not stored (the delivery failed, or their
        address was deleted meanwhile)."""
        for address in addresses:
            size = admission.reserved.pop(address, 0)
            if size:
                self.usage.add(address, -size)

    def overflow_dsn(self, ctx: MessageContext, addresses: set[str], *,
                     listener: str) -> PendingJob | None:
        """The DSN for copies left out while the message went to others — only to a
        sender we may answer (module docstring); None otherwise, logged and counted."""
        sender = ctx.envelope_sender
        # auth None: not from the Internet — on submission, our own customer (AUTH).
        verified = (listener == SUBMISSION if ctx.auth is None
                    else ctx.auth.sender_authenticated)
        answerable = verified and bool(sender)
        metrics.QUOTA_OVERFLOWS.labels(listener, "dsn" if answerable else "none").inc(
            len(addresses))
        for address in sorted(addresses):
            _throttled.warning(("overflow", address), "%s %s: the mailbox of %s is full "
                               "(inbox + quarantine); not stored for it, %s", listener,
                               ctx.queue_id, address,
                               f"DSN to <{sender}>" if answerable
                               else "no DSN to an unverified sender")
        if not answerable:
            return None
        dsn = build_dsn(
            original=ctx.raw, original_sender=sender,
            failures=[FailedRecipient(address, "5.2.2", "552 5.2.2 mailbox full")
                      for address in sorted(addresses)],
            reporting_mta=self.settings.mx.hostname, arrival_date=ctx.received_at,
            now=ctx.received_at)
        return PendingJob(kind="dsn", mail_from="", recipients=[sender], message=dsn)

    async def notify(self, plan: DeliveryPlan, quotas: dict[str, int], *,
                     now: datetime) -> None:
        """SPEC §8: one notice when a mailbox passes 90 % of its quota.  Only addresses at
        or over the threshold cost a thread hop; a failed notice never fails the mail."""
        for address in plan.copy_sizes():
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
