"""Brute-force protection for POP3 and submission logins (issue 5).

Failures are counted per client IP and per account in the ``login_failures`` table, so a
guessing attack spread over several nodes behind a load balancer is counted once.  Each
failure is answered after a growing, capped delay (slowing a single connection down), and
``max_failures`` failures inside the window lock the key for ``lock_seconds``.  A success
clears the account counter but not the IP counter, so one valid account cannot be used to
reset the counter of an IP that is guessing other accounts' passwords.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.storage import login_failure_repo

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


def ip_key(peer_ip: str) -> str:
    return f"ip:{peer_ip}"


def account_key(account: str) -> str:
    return f"account:{account.lower()}"


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
        base_delay_seconds: float = 0.5,
        max_delay_seconds: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self.max_failures = max_failures
        self.ip_max_failures = ip_max_failures or max_failures
        self.lock_seconds = lock_seconds
        self._base_delay = base_delay_seconds
        self._max_delay = max_delay_seconds
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        session_factory: sessionmaker[Session],
        clock: Clock,
    ) -> LoginGuard:
        security = settings.security
        return cls(
            session_factory,
            clock,
            max_failures=security.login_max_failures,
            lock_seconds=security.login_lock_seconds,
            base_delay_seconds=security.login_base_delay_seconds,
            max_delay_seconds=security.login_max_delay_seconds,
        )

    def delay_after(self, failures: int) -> float:
        """Doubling delay per failure, capped: 0.5, 1, 2, 4, 5, 5 … seconds by default."""
        if failures <= 0 or self._base_delay <= 0:
            return 0.0
        return float(min(self._base_delay * 2 ** min(failures - 1, 30), self._max_delay))

    async def locked_until(self, *, peer_ip: str, account: str) -> datetime | None:
        """When the IP's or the account's lock ends, or None if neither is locked."""
        keys = (ip_key(peer_ip), account_key(account))
        now = self._clock.now()

        def read() -> datetime | None:
            with self._session_factory() as session:
                return login_failure_repo.latest_lock(session, keys=keys, now=now)

        return await asyncio.to_thread(read)

    async def record_failure(self, *, peer_ip: str, account: str) -> None:
        """Count the failure on both keys, then wait the growing delay before returning."""
        now = self._clock.now()
        limits: Sequence[tuple[str, int]] = (
            (ip_key(peer_ip), self.ip_max_failures),
            (account_key(account), self.max_failures),
        )

        def write() -> int:
            with self._session_factory() as session, session.begin():
                counts = [
                    login_failure_repo.record_failure(
                        session,
                        key=key,
                        now=now,
                        window_seconds=self.lock_seconds,
                        max_failures=limit,
                        lock_seconds=self.lock_seconds,
                    )
                    for key, limit in limits
                ]
            for (key, _), count in zip(limits, counts, strict=True):
                if count.locked_until is not None:
                    log.warning("login locked for %s until %s after %d failures",
                                key, count.locked_until.isoformat(), count.failures)
            return max(count.failures for count in counts)

        failures = await asyncio.to_thread(write)
        delay = self.delay_after(failures)
        if delay:
            await self._sleep(delay)

    async def record_success(self, *, account: str) -> None:
        def write() -> None:
            with self._session_factory() as session, session.begin():
                login_failure_repo.clear(session, key=account_key(account))

        await asyncio.to_thread(write)

    async def purge_stale(self) -> int:
        """Drop counters outside the window and not locked (call from the purge job)."""
        now = self._clock.now()

        def write() -> int:
            with self._session_factory() as session, session.begin():
                return login_failure_repo.purge_stale(
                    session, now=now, window_seconds=self.lock_seconds
                )

        return await asyncio.to_thread(write)

    async def failures(self, *, key: str) -> int:
        def read() -> int:
            with self._session_factory() as session:
                return login_failure_repo.failure_count(session, key=key)

        return await asyncio.to_thread(read)
