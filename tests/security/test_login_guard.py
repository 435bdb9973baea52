"""The shared login guard and credential check, on SQLite and PostgreSQL (issue 5)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator, AuthOutcome
from mailplane.auth.login_guard import LoginGuard, account_key, ip_key
from mailplane.auth.passwords import PasswordHashing
from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.storage.db import make_engine, make_session_factory
from tests.factories.pop3 import PASSWORD, add_address

ADDRESS = "hanako@a01.example.net"
IP = "192.0.2.10"


@pytest.fixture
def session_factory(db_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def make_guard(
    session_factory: sessionmaker[Session], clock: FrozenClock, **kwargs: object
) -> LoginGuard:
    options: dict[str, object] = {"max_failures": 3, "lock_seconds": 60,
                                  "base_delay_seconds": 0}
    options.update(kwargs)
    return LoginGuard(session_factory, clock, **options)  # type: ignore[arg-type]


async def test_account_locks_after_max_failures_and_unlocks_after_lock_time(
    session_factory: sessionmaker[Session],
) -> None:
    clock = FrozenClock()
    guard = make_guard(session_factory, clock)
    for attempt in range(3):
        assert await guard.locked_until(peer_ip=f"198.51.100.{attempt}", account="m1") is None
        await guard.record_failure(peer_ip=f"198.51.100.{attempt}", account="m1")
    # Three different IPs, one account: the account is locked for every IP that failed
    # (issue 15: an IP with no failures of its own is not locked out by the others).
    locked = await guard.locked_until(peer_ip="198.51.100.0", account="M1")
    assert locked == clock.now() + timedelta(seconds=60)
    assert await guard.locked_until(peer_ip="203.0.113.9", account="M1") is None
    clock.advance(timedelta(seconds=59))
    assert await guard.locked_until(peer_ip="198.51.100.1", account="m1") is not None
    clock.advance(timedelta(seconds=1))
    assert await guard.locked_until(peer_ip="198.51.100.1", account="m1") is None
    # After the lock the count starts again instead of locking at the next mistake.
    await guard.record_failure(peer_ip="203.0.113.9", account="m1")
    assert await guard.failures(key=account_key("m1")) == 1
    assert await guard.locked_until(peer_ip="203.0.113.9", account="m1") is None


async def test_ip_locks_after_failures_on_different_accounts(
    session_factory: sessionmaker[Session],
) -> None:
    clock = FrozenClock()
    guard = make_guard(session_factory, clock)
    for n in range(3):
        await guard.record_failure(peer_ip=IP, account=f"m{n}")
    assert await guard.locked_until(peer_ip=IP, account="m-never-tried") is not None
    assert await guard.locked_until(peer_ip="192.0.2.11", account="m-never-tried") is None


async def test_failures_outside_the_window_do_not_add_up(
    session_factory: sessionmaker[Session],
) -> None:
    clock = FrozenClock()
    guard = make_guard(session_factory, clock)
    await guard.record_failure(peer_ip=IP, account="m1")
    await guard.record_failure(peer_ip=IP, account="m1")
    clock.advance(timedelta(seconds=61))
    await guard.record_failure(peer_ip=IP, account="m1")
    assert await guard.failures(key=account_key("m1")) == 1
    assert await guard.locked_until(peer_ip=IP, account="m1") is None


async def test_purge_drops_only_counters_that_no_longer_matter(
    session_factory: sessionmaker[Session],
) -> None:
    clock = FrozenClock()
    guard = make_guard(session_factory, clock)
    for _ in range(3):
        await guard.record_failure(peer_ip=IP, account="locked")
    clock.advance(timedelta(seconds=30))
    await guard.record_failure(peer_ip="192.0.2.77", account="recent")
    clock.advance(timedelta(seconds=31))
    # The first IP and account are outside the window and their lock ran out.
    assert await guard.purge_stale() == 2
    assert await guard.failures(key=account_key("locked")) == 0
    assert await guard.failures(key=ip_key(IP)) == 0
    assert await guard.failures(key=account_key("recent")) == 1


async def test_counts_are_shared_between_guards_on_two_nodes(
    db_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    clock = FrozenClock()
    other_engine = make_engine(db_settings.database_url)
    try:
        node_a = make_guard(session_factory, clock)
        node_b = make_guard(make_session_factory(other_engine), clock)
        await node_a.record_failure(peer_ip=IP, account="m1")
        await node_b.record_failure(peer_ip=IP, account="m1")
        assert await node_a.locked_until(peer_ip=IP, account="m1") is None
        await node_a.record_failure(peer_ip=IP, account="m1")
        assert await node_b.locked_until(peer_ip=IP, account="m1") is not None
    finally:
        other_engine.dispose()


async def test_concurrent_failures_are_all_counted(
    session_factory: sessionmaker[Session],
) -> None:
    guard = make_guard(session_factory, FrozenClock(), max_failures=1000)
    await asyncio.gather(*(guard.record_failure(peer_ip=IP, account="m1") for _ in range(12)))
    assert await guard.failures(key=account_key("m1")) == 12
    assert await guard.failures(key=ip_key(IP)) == 12


async def test_success_clears_the_account_counter_but_not_the_ip_counter(
    session_factory: sessionmaker[Session],
) -> None:
    guard = make_guard(session_factory, FrozenClock())
    await guard.record_failure(peer_ip=IP, account="m1")
    await guard.record_failure(peer_ip=IP, account="m1")
    await guard.record_success(account="m1")
    assert await guard.failures(key=account_key("m1")) == 0
    assert await guard.failures(key=ip_key(IP)) == 2


async def test_delay_grows_after_each_failure_and_is_capped(
    session_factory: sessionmaker[Session],
) -> None:
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    guard = make_guard(session_factory, FrozenClock(), max_failures=100,
                       base_delay_seconds=0.5, max_delay_seconds=3.0, sleep=record_sleep)
    for _ in range(5):
        await guard.record_failure(peer_ip=IP, account="m1")
    assert slept == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_authenticate_refuses_unknown_and_wrong_password_alike_and_locks(
    db_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    clock = FrozenClock()
    hashing = PasswordHashing(db_settings.security)
    pop_account = add_address(session_factory, hashing, ADDRESS)
    auth = Authenticator(session_factory, hashing, make_guard(session_factory, clock))
    ok = await auth.authenticate(ADDRESS.upper(), PASSWORD, peer_ip=IP, listener="test")
    assert ok.ok and ok.pop_account == pop_account and ok.address == ADDRESS
    wrong = await auth.authenticate(pop_account, "nope!", peer_ip=IP, listener="test")
    unknown = await auth.authenticate("m0000000", "nope!", peer_ip="192.0.2.99",
                                      listener="test")
    assert wrong == unknown
    assert wrong.outcome is AuthOutcome.BAD_CREDENTIALS
    # Failures under the address and the POP account count for the same account: locked
    # for the IPs that failed, while the owner's clean IP still gets in (issue 15).
    await auth.authenticate(ADDRESS, "nope!", peer_ip="192.0.2.50", listener="test")
    await auth.authenticate(pop_account, "nope!", peer_ip="192.0.2.51", listener="test")
    locked = await auth.authenticate(pop_account, PASSWORD, peer_ip="192.0.2.50",
                                     listener="test")
    assert locked.outcome is AuthOutcome.LOCKED
    clean = await auth.authenticate(pop_account, PASSWORD, peer_ip="192.0.2.52",
                                    listener="test")
    assert clean.ok
