"""Hourly limits of the account calls anyone may make without a key (SPEC §8a, §9a):
"forgot the password" requests and code checks, per client IP and per account.

Counted in ``rate_counters`` (one upsert per limit, shared by every node; the housekeeping
job drops past hours), in the caller's transaction.  Over a limit the answer is 429 with
``Retry-After`` — the seconds to the next hour — however many requests arrive at once.
An account's counter is kept under the customer number as typed (normalised), whether or
not it exists, so reaching it reveals nothing either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailplane.api.errors import ApiError
from mailplane.metrics import API_REFUSALS
from mailplane.net.limits import client_key
from mailplane.storage import rate_counter_repo

WINDOW_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    per_hour: int


def ip_limit(name: str, peer_ip: str, per_hour: int) -> Limit:
    return Limit(f"{name}:ip:{client_key(peer_ip)}", per_hour)


def account_limit(name: str, account: str, per_hour: int) -> Limit:
    """A bounded key for any typed text (a hash: garbage input cannot grow the key)."""
    digest = hashlib.sha256(account.lower().encode()).hexdigest()[:32]
    return Limit(f"{name}:account:{digest}", per_hour)


def take(session: Session, limits: Sequence[Limit], now: datetime) -> None:
    """Count one request against each limit; 429 + Retry-After when any is over.  The
    counts are written (the caller commits) even when refused: a flood stays refused."""
    moment = int(now.timestamp())
    window = moment // WINDOW_SECONDS * WINDOW_SECONDS
    over = False
    for limit in limits:
        count = rate_counter_repo.add(session, key=limit.key, window_start=window, amount=1)
        over = over or count > limit.per_hour
    if over:
        session.commit()
        API_REFUSALS.labels("account_rate").inc()
        raise ApiError(429, "too_many_requests",
                       "too many attempts; try again in {minutes} minutes",
                       headers={"Retry-After": str(window + WINDOW_SECONDS - moment)},
                       minutes=max(1, (window + WINDOW_SECONDS - moment + 59) // 60))
