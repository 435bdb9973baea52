"""The border of forwarding (issue 20, SPEC §5, §8a): what a plan's forwards to remote
destinations must pass before the plan is stored.

- **The hourly limit per forwarding address**, shared by every node (``rate_counters``
  through :func:`~mailplane.auth.send_quota.charge_in`): forwards leaving the platform
  count as submission counts one account — ``forwarding.remote_messages_per_hour`` and
  ``remote_recipients_per_hour`` (100 / 300 by default).  Anonymous MX mail to one's own
  forwarding address had sent 330 external deliveries in 7 s.  Over the limit the forward
  is not queued and the message stays in the inbox even with keep-copy OFF (the plan's
  ``fallback``), counted in ``mailplane_forwards_withheld_total{reason="rate_limit"}``.
- **The SRS addresses emitted** (``srs_forwards``), with the destinations they went to,
  in the same transaction: the MX relays a bounce only to an SRS address recorded here
  and only for one of those destinations (:mod:`mailplane.smtp.srs_returns`).  Nothing
  is recorded for a sender that did not authenticate: a bounce to it is refused.

One short transaction per message that forwards outside, before the plan is stored; if
the plan is then not stored (a 451), the charge is refunded — the sender's retry is
charged again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.auth.send_quota import Charge, HourlyQuotas, Quota, charge_in
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.plan import DeliveryPlan, InboxWrite, RemoteForward
from mailplane.net.throttled_log import ThrottledLog
from mailplane.storage import srs_forward_repo

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: SRS timestamps have a day's resolution: a record outlives the address by a day.
SRS_RECORD_SLACK = timedelta(days=1)


class ForwardGate:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session],
                 clock: Clock) -> None:
        self.settings = settings
        self._session_factory = session_factory
        self._hourly = HourlyQuotas(session_factory, clock)

    def quotas(self, forward: RemoteForward) -> tuple[Quota, ...]:
        config = self.settings.forwarding
        owner = forward.owner.lower()
        found = (
            Quota("forward_messages_per_hour", f"fwd-msg:{owner}",
                  config.remote_messages_per_hour, 1),
            Quota("forward_recipients_per_hour", f"fwd-rcpt:{owner}",
                  config.remote_recipients_per_hour, len(forward.job.recipients)),
        )
        return tuple(q for q in found if q.limit > 0)

    async def admit(self, plan: DeliveryPlan, *, now: datetime) -> list[Charge]:
        """Charge each remote forward of ``plan`` to its owner; take out those over the
        limit (their fallback copy goes in) and record the SRS senders of the others.
        Returns the charges, for :meth:`refund`."""
        forwards = list(plan.remote_forwards)
        if not forwards:
            return []
        start, weight = self._hourly.window()
        expires_at = now + timedelta(days=self.settings.srs.max_age_days) + SRS_RECORD_SLACK

        def write() -> tuple[list[Charge], list[RemoteForward]]:
            charges: list[Charge] = []
            refused: list[RemoteForward] = []
            with self._session_factory() as session, session.begin():
                for forward in forwards:
                    quotas = self.quotas(forward)
                    exceeded = charge_in(session, quotas, start=start, weight=weight)
                    if exceeded is not None:
                        refused.append(forward)
                        _throttled.warning(
                            ("forward_limit", forward.owner),
                            "forward from %s to %d remote destination(s) not sent: over %s; "
                            "kept in the mailbox", forward.owner, len(forward.job.recipients),
                            exceeded)
                        continue
                    charges.append(Charge(start, quotas))
                    if forward.record_srs and forward.job.mail_from:
                        srs_forward_repo.record(session, srs_address=forward.job.mail_from,
                                                destinations=forward.job.recipients,
                                                expires_at=expires_at)
            return charges, refused

        charges, refused = await asyncio.to_thread(write)
        for forward in refused:
            metrics.FORWARDS_WITHHELD.labels("rate_limit").inc()
            plan.outbound.remove(forward.job)
            plan.remote_forwards.remove(forward)
            fallback = forward.fallback
            if isinstance(fallback, InboxWrite):
                if fallback not in plan.inbox:
                    plan.inbox.append(fallback)
            elif fallback is not None and fallback not in plan.outbound:
                plan.outbound.append(fallback)
            # Its other jobs need not bring the message back any more: it is kept.
            for job in plan.outbound:
                if fallback is not None and job.return_to == forward.owner:
                    job.return_to = ""
        return charges

    async def refund(self, charges: list[Charge]) -> None:
        """Give back the charges of a plan that was not stored after all."""
        for charge in charges:
            try:
                await self._hourly.refund(charge)
            except Exception as exc:  # the 4xx of the plan matters more; log only
                log.warning("forward limit refund failed: %s", exc)
