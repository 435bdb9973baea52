"""Brute-force protection for POP3 and submission logins (issue 5; reworked in issue 15
after Dovecot's auth penalty and fail2ban's growing bans; SPEC §8a).

Counters live in the ``login_failures`` table, so a guessing attack spread over several
nodes behind a load balancer is counted once.

- **Per client IP, counted before the check.** :meth:`LoginGuard.begin` atomically adds
  the attempt to the IP's attempts in flight; an IP whose failures plus attempts in flight
  already reach ``login_ip_max_failures`` is refused without its password being checked
  — 40 parallel attempts from one IP get at most that many checks.  An attempt that
  finds the budget taken only by attempts still in flight waits for them (up to
  :data:`BUSY_WAIT_SECONDS`) instead of being refused, so a burst of right passwords from
  one NAT address is served.  A failed check becomes a failure (:meth:`failed`); a right
  one gives its place back (:meth:`succeeded`).  At the limit the IP is locked for
  ``login_lock_seconds``, each further lock twice as long (up to
  ``login_max_lock_seconds``).
- **Per account, only against IPs with failures of their own.** ``login_max_failures``
  failures on one account (from any IP) lock the account for IPs that have failed too —
  a distributed guesser gets one try per fresh IP — while a right password from an IP
  with no failures is never refused because of failures elsewhere: someone who knows
  only an address cannot lock its owner out.
- Each failure (and each refused attempt) is answered after a growing, capped delay.
A success clears the account counter, never the IP's: one valid account cannot wash the
record of an IP that is guessing other accounts' passwords.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.net.limits import client_key
from mailplane.storage import login_failure_repo

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: How long an attempt waits for the IP's attempts in flight to finish before it is
#: refused (a check takes a fraction of a second).
BUSY_WAIT_SECONDS = 10.0
_BUSY_STEP_SECONDS = 0.05


def ip_key(peer_ip: str) -> str:
    """The counter of a client: its address, or for IPv6 its /64 (one subscriber's block:
    rotating addresses inside it must not reset the count)."""
    return f"ip:{client_key(peer_ip)}"


def account_key(account: str) -> str:
    return f"account:{account.lower()}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One login attempt as the guard admitted (or refused) it."""

    peer_ip: str
    account: str
    allowed: bool
    #: Failures of the IP before this attempt (its own in flight not counted).
    ip_failures: int = 0
    locked_until: datetime | None = None
    #: Refused only because the IP's budget is taken by attempts still in flight.
    busy: bool = False


class LoginGuard:
    """Shared failure counters, delays and temporary locks."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        clock: Clock,
        *,
        max_failures: int,
        lock_seconds: int,
        ip_max_failures: int | None = None,
        max_lock_seconds: int | None = None,
        base_delay_seconds: float = 0.5,
        max_delay_seconds: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self.max_failures = max_failures
        self.ip_max_failures = ip_max_failures or max_failures
        self.lock_seconds = lock_seconds
        self.max_lock_seconds = max(max_lock_seconds or lock_seconds, lock_seconds)
        self._base_delay = base_delay_seconds
        self._max_delay = max_delay_seconds
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session_factory: sessionmaker[Session],
        clock: Clock,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> LoginGuard:
        """``sleep``: how a delay is waited (a caller whose client applies its own delay —
        Dovecot's ``auth_failure_delay`` — passes one that returns at once)."""
        security = settings.security
        return cls(
            session_factory,
            clock,
            max_failures=security.login_max_failures,
            ip_max_failures=security.login_ip_max_failures,
            lock_seconds=security.login_lock_seconds,
            max_lock_seconds=security.login_max_lock_seconds,
            base_delay_seconds=security.login_base_delay_seconds,
            max_delay_seconds=security.login_max_delay_seconds,
            sleep=sleep,
        )

    def delay_after(self, failures: int) -> float:
        """Doubling delay per failure, capped: 0.5, 1, 2, 4, 5, 5 … seconds by default."""
        if failures <= 0 or self._base_delay <= 0:
            return 0.0
        return float(min(self._base_delay * 2 ** min(failures - 1, 30), self._max_delay))

    # --- one attempt ----------------------------------------------------------------

    async def begin(self, *, peer_ip: str, account: str) -> Attempt:
        """Count the attempt before its password is checked and decide whether it may be
        checked at all (one transaction: atomic on SQLite and PostgreSQL).  While the IP's
        budget is taken only by attempts in flight, wait for them."""
        waited, step = 0.0, _BUSY_STEP_SECONDS
        while True:
            attempt = await self._reserve(peer_ip=peer_ip, account=account)
            if not attempt.busy or waited >= BUSY_WAIT_SECONDS:
                break
            await asyncio.sleep(step)
            waited += step
            step = min(step * 2, 0.5)
        if not attempt.allowed:
            log.info("login refused unchecked: peer %s (%d failures)", peer_ip,
                     attempt.ip_failures)
        return attempt

    async def _reserve(self, *, peer_ip: str, account: str) -> Attempt:
        now = self._clock.now()

        def write() -> Attempt:
            with self._session_factory() as session, session.begin():
                reserved = login_failure_repo.reserve_attempt(
                    session, key=ip_key(peer_ip), now=now, window_seconds=self.lock_seconds)
                ip_failures = reserved.failures + reserved.in_flight - 1
                locked = reserved.locked_until if (
                    reserved.locked_until is not None and reserved.locked_until > now) else None
                busy = locked is None and (
                    reserved.failures + reserved.in_flight > self.ip_max_failures)
                # Only failures the IP has really had count here, never its attempts in
                # flight: a household's mail clients logging in together from a clean
                # IP are not refused because someone elsewhere locked the account.
                if locked is None and not busy and reserved.failures > 0:
                    locked = login_failure_repo.latest_lock(
                        session, keys=(account_key(account),), now=now)
                if locked is None and not busy:
                    return Attempt(peer_ip, account, True, ip_failures)
                login_failure_repo.release_attempt(session, key=ip_key(peer_ip))
                return Attempt(peer_ip, account, False, ip_failures, locked or now, busy)

        return await asyncio.to_thread(write)

    async def failed(self, attempt: Attempt, *, delay: bool = True) -> None:
        """The password was wrong: a failure for the IP and the account; then the delay."""
        now = self._clock.now()

        def write() -> int:
            with self._session_factory() as session, session.begin():
                ip = login_failure_repo.confirm_failure(
                    session, key=ip_key(attempt.peer_ip), now=now,
                    max_failures=self.ip_max_failures, lock_seconds=self.lock_seconds,
                    max_lock_seconds=self.max_lock_seconds)
                account = login_failure_repo.record_failure(
                    session, key=account_key(attempt.account), now=now,
                    window_seconds=self.lock_seconds, max_failures=self.max_failures,
                    lock_seconds=self.lock_seconds)
            for key, count in ((ip_key(attempt.peer_ip), ip),
                               (account_key(attempt.account), account)):
                if count.locked_until is not None and count.locked_until > now:
                    log.warning("login locked for %s until %s after %d failures", key,
                                count.locked_until.isoformat(), count.failures)
            return max(ip.failures, account.failures)

        failures = await asyncio.to_thread(write)
        if delay:
            await self._delay(failures)

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the IP's place back, the account's failures cleared."""

        def write() -> None:
            with self._session_factory() as session, session.begin():
                login_failure_repo.release_attempt(session, key=ip_key(attempt.peer_ip))
                login_failure_repo.clear(session, key=account_key(attempt.account))

        await asyncio.to_thread(write)

    async def refused(self, attempt: Attempt) -> None:
        """Slow down an IP that keeps trying while refused (Dovecot's auth penalty)."""
        await self._delay(attempt.ip_failures)

    async def _delay(self, failures: int) -> None:
        delay = self.delay_after(failures)
        if delay:
            await self._sleep(delay)

    # --- reads and whole failures (status pages, tests, the purge job) ---------------

    async def locked_until(self, *, peer_ip: str, account: str) -> datetime | None:
        """When a login from ``peer_ip`` to ``account`` is allowed again: the IP's lock,
        or the account's if the IP has failures of its own; None if it is allowed now."""
        now = self._clock.now()

        def read() -> datetime | None:
            with self._session_factory() as session:
                ip_lock = login_failure_repo.latest_lock(session, keys=(ip_key(peer_ip),),
                                                         now=now)
                if ip_lock is not None:
                    return ip_lock
                if login_failure_repo.failure_count(session, key=ip_key(peer_ip)) == 0:
                    return None
                return login_failure_repo.latest_lock(
                    session, keys=(account_key(account),), now=now)

        return await asyncio.to_thread(read)

    async def record_failure(self, *, peer_ip: str, account: str) -> None:
        """Count one whole failed attempt (begin + failed), then wait the delay."""
        now = self._clock.now()

        def reserve() -> None:
            with self._session_factory() as session, session.begin():
                login_failure_repo.reserve_attempt(
                    session, key=ip_key(peer_ip), now=now, window_seconds=self.lock_seconds)

        await asyncio.to_thread(reserve)
        await self.failed(Attempt(peer_ip, account, True))

    async def record_success(self, *, account: str) -> None:
        def write() -> None:
            with self._session_factory() as session, session.begin():
                login_failure_repo.clear(session, key=account_key(account))

        await asyncio.to_thread(write)

    async def purge_stale(self) -> int:
        """Drop counters that no longer matter (the housekeeping job calls this); an IP's
        lock history is kept for ``login_max_lock_seconds`` after its last failure."""
        now = self._clock.now()

        def write() -> int:
            with self._session_factory() as session, session.begin():
                return login_failure_repo.purge_stale(
                    session, now=now, window_seconds=self.lock_seconds,
                    forget_seconds=self.max_lock_seconds)

        return await asyncio.to_thread(write)

    async def failures(self, *, key: str) -> int:
        def read() -> int:
            with self._session_factory() as session:
                return login_failure_repo.failure_count(session, key=key)

        return await asyncio.to_thread(read)


def purge_login_counters(settings: Settings, session_factory: sessionmaker[Session],
                         clock: Clock) -> int:
    """:meth:`LoginGuard.purge_stale`, blocking (the housekeeping job, in a thread)."""
    security = settings.security
    with session_factory() as session, session.begin():
        return login_failure_repo.purge_stale(
            session, now=clock.now(), window_seconds=security.login_lock_seconds,
            forget_seconds=security.login_max_lock_seconds)
