"""Submission sending quotas (SPEC §8a, issue 15): messages and recipients per account and
per client IP per hour, shared by every process and every node through ``rate_counters``.

An authenticated customer (or a stolen password) may not turn submission into a spam
cannon: one account queued 2,000 remote deliveries in 1.5 s before this.  Each message is
*charged* when its DATA is complete and before anything is stored: one transaction adds
its recipients to the four counters of the current hour and reads the previous hour's; the
count that matters is the sliding-window estimate ``current + previous × (1 − elapsed
share of this hour)``.  If any quota would be exceeded the transaction is rolled back
(nothing charged) and the message is answered ``451 4.7.1`` (nothing stored, the client retries
later).  A charged message whose delivery then fails is refunded.

Limits of 0 are off; per-IP quotas skip ``security.limit_exempt_networks``.

The counting itself (:class:`HourlyQuotas`, :func:`charge_in`) serves every hourly limit of
the platform: forwards to remote destinations, bounces relayed through SRS addresses and
DSNs per recipient count in the same table with keys of their own (issue 20).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.clock import Clock
from mailplane.config.sections import SubmissionConfig
from mailplane.net.limits import client_key, in_networks, parse_networks
from mailplane.net.throttled_log import ThrottledLog
from mailplane.storage import rate_counter_repo

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

WINDOW_SECONDS = 3600
LISTENER = "submission"


@dataclass(frozen=True, slots=True)
class Quota:
    """One hourly quota as it applies to one message."""

    name: str
    key: str
    limit: int
    amount: int


@dataclass(frozen=True, slots=True)
class Charge:
    """What one message was charged (to refund it if its delivery fails)."""

    window_start: int
    quotas: tuple[Quota, ...]


class QuotaExceeded(Exception):
    def __init__(self, quota: Quota, estimate: int) -> None:
        super().__init__(f"{quota.name} ({estimate}/{quota.limit})")
        self.quota = quota
        self.estimate = estimate


def window_at(timestamp: float) -> tuple[int, float]:
    """The hour ``timestamp`` falls in (its start, epoch seconds) and the weight of the
    previous hour in the sliding estimate."""
    return rate_counter_repo.window_of(timestamp, WINDOW_SECONDS)


def charge_in(session: Session, quotas: Sequence[Quota], *, start: int,
              weight: float) -> QuotaExceeded | None:
    """Charge ``quotas`` inside the caller's transaction (its first statements, so SQLite
    holds the write lock before reading); if one would pass its limit, take the charge
    back and return why — the caller's other writes stay.  Every node adds to the same
    rows, so the counts are exact across nodes."""
    current = {q.key: rate_counter_repo.add(session, key=q.key, window_start=start,
                                            amount=q.amount)
               for q in quotas}
    previous = rate_counter_repo.counts(session, keys=[q.key for q in quotas],
                                        window_start=start - WINDOW_SECONDS)
    for quota in quotas:
        estimate = current[quota.key] + int(previous.get(quota.key, 0) * weight)
        if estimate > quota.limit:
            for charged in quotas:
                rate_counter_repo.subtract(session, key=charged.key, window_start=start,
                                           amount=charged.amount)
            return QuotaExceeded(quota, estimate)
    return None


class HourlyQuotas:
    """Hourly quotas (sliding) of any kind, kept in ``rate_counters``: the submission
    quotas below, forwards to remote destinations, bounces relayed through SRS addresses
    and DSNs per recipient (issue 20) all count here, each with keys of its own."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Clock) -> None:
        self._session_factory = session_factory
        self._clock = clock

    def window(self) -> tuple[int, float]:
        return window_at(self._clock.now().timestamp())

    async def charge(self, quotas: Sequence[Quota]) -> Charge:
        """Charge in a transaction of its own; :class:`QuotaExceeded` (and nothing
        charged) if a quota would be passed."""
        quotas = tuple(q for q in quotas if q.limit > 0)
        start, weight = self.window()

        def write() -> Charge:
            with self._session_factory() as session, session.begin():
                exceeded = charge_in(session, quotas, start=start, weight=weight)
                if exceeded is not None:
                    raise exceeded  # rolls back
            return Charge(start, quotas)

        return await asyncio.to_thread(write)

    async def refund(self, charge: Charge) -> None:
        """Give back a charge whose message was not stored after all."""

        def write() -> None:
            with self._session_factory() as session, session.begin():
                for quota in charge.quotas:
                    rate_counter_repo.subtract(session, key=quota.key,
                                               window_start=charge.window_start,
                                               amount=quota.amount)

        await asyncio.to_thread(write)

    async def exhausted(self, quotas: Sequence[Quota]) -> Quota | None:
        """A quota that charging ``quotas`` would pass (read only)."""
        quotas = tuple(q for q in quotas if q.limit > 0)
        start, weight = self.window()

        def read() -> Quota | None:
            with self._session_factory() as session:
                keys = [q.key for q in quotas]
                current = rate_counter_repo.counts(session, keys=keys, window_start=start)
                previous = rate_counter_repo.counts(session, keys=keys,
                                                    window_start=start - WINDOW_SECONDS)
            for quota in quotas:
                estimate = current.get(quota.key, 0) + int(previous.get(quota.key, 0) * weight)
                if estimate + quota.amount > quota.limit:
                    return quota
            return None

        return await asyncio.to_thread(read) if quotas else None


class SendQuota:
    def __init__(self, session_factory: sessionmaker[Session], clock: Clock,
                 config: SubmissionConfig, *, exempt_networks: Iterable[str] = ()) -> None:
        self._hourly = HourlyQuotas(session_factory, clock)
        self._config = config
        self._exempt = parse_networks(exempt_networks)

    def quotas(self, *, account: str, peer_ip: str, recipients: int) -> tuple[Quota, ...]:
        """The quotas one message with ``recipients`` recipients counts against."""
        config = self._config
        who = account.lower()
        found = [
            Quota("account_messages_per_hour", f"acct-msg:{who}",
                  config.account_messages_per_hour, 1),
            Quota("account_recipients_per_hour", f"acct-rcpt:{who}",
                  config.account_recipients_per_hour, recipients),
        ]
        if not in_networks(peer_ip, self._exempt):
            client = client_key(peer_ip)
            found += [
                Quota("ip_messages_per_hour", f"ip-msg:{client}", config.ip_messages_per_hour, 1),
                Quota("ip_recipients_per_hour", f"ip-rcpt:{client}",
                      config.ip_recipients_per_hour, recipients),
            ]
        return tuple(q for q in found if q.limit > 0)

    async def charge(self, *, account: str, peer_ip: str, recipients: int) -> Charge:
        """Charge one message; :class:`QuotaExceeded` (and nothing charged) if it would
        pass a quota."""
        quotas = self.quotas(account=account, peer_ip=peer_ip, recipients=recipients)
        try:
            return await self._hourly.charge(quotas)
        except QuotaExceeded as exc:
            metrics.LIMIT_REFUSALS.labels(LISTENER, exc.quota.name).inc()
            _throttled.warning((exc.quota.name, account), "submission: %s from %s over %s; "
                               "answering 451", account, peer_ip, exc)
            raise

    async def refund(self, charge: Charge) -> None:
        """Give back a charge whose message was not stored after all."""
        await self._hourly.refund(charge)

    async def exhausted(self, *, account: str, peer_ip: str) -> Quota | None:
        """A quota that one more one-recipient message would pass (read only: asked at
        MAIL FROM, so a client over its quota does not upload the message first)."""
        found = await self._hourly.exhausted(
            self.quotas(account=account, peer_ip=peer_ip, recipients=1))
        if found is not None:
            metrics.LIMIT_REFUSALS.labels(LISTENER, found.name).inc()
            _throttled.warning((found.name, account), "submission: %s from %s over %s at "
                               "MAIL FROM; answering 451", account, peer_ip, found.name)
        return found


def purge_counters(session_factory: sessionmaker[Session], clock: Clock) -> int:
    """Delete every rate counter window older than the previous one of its length — the
    hours of these quotas and the minutes and days of the auto-reply caps (blocking; the
    housekeeping job)."""
    with session_factory() as session, session.begin():
        return rate_counter_repo.purge_expired(session, now=clock.now().timestamp())
