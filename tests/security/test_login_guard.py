"""The shared login guard and credential check, on SQLite and PostgreSQL (issue 5;
counters per (account, client), per account and per IP since issue 22)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator, AuthOutcome
from mailplane.auth.login_guard import (
    PORTAL,
    LoginGuard,
    account_key,
    account_tag,
    ip_key,
    pair_key,
)
from mailplane.auth.passwords import PasswordHashing
from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import Address
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
    # The first IP, pair and account are outside the window and their lock ran out.
    assert await guard.purge_stale() == 3
    assert await guard.failures(key=account_key("locked")) == 0
    assert await guard.failures(key=pair_key("locked", IP)) == 0
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
    assert await guard.failures(key=pair_key("m1", IP)) == 12
    # The IP counts different accounts: one so far, then twelve more at once.
    assert await guard.failures(key=ip_key(IP)) == 1
    await asyncio.gather(*(guard.record_failure(peer_ip=IP, account=f"n{n}")
                           for n in range(12)))
    assert await guard.failures(key=ip_key(IP)) == 13


async def test_success_clears_the_account_counter_but_not_the_ip_counter(
    session_factory: sessionmaker[Session],
) -> None:
    guard = make_guard(session_factory, FrozenClock())
    await guard.record_failure(peer_ip=IP, account="m1")
    await guard.record_failure(peer_ip=IP, account="m1")
    await guard.record_success(account="m1")
    assert await guard.failures(key=account_key("m1")) == 0
    assert await guard.failures(key=pair_key("m1", IP)) == 2
    assert await guard.failures(key=ip_key(IP)) == 1


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
    # for the IPs that failed, while the owner's clean IP still gets in (issue 15).  Each
    # guess is another password: the same one again is no new guess (issue 22).
    await auth.authenticate(ADDRESS, "nope2", peer_ip="192.0.2.50", listener="test")
    await auth.authenticate(pop_account, "nope3", peer_ip="192.0.2.51", listener="test")
    locked = await auth.authenticate(pop_account, PASSWORD, peer_ip="192.0.2.50",
                                     listener="test")
    assert locked.outcome is AuthOutcome.LOCKED
    clean = await auth.authenticate(pop_account, PASSWORD, peer_ip="192.0.2.52",
                                    listener="test")
    assert clean.ok


# --- telling attackers from families (issue 22) ----------------------------------------


async def test_the_same_wrong_password_again_counts_once_and_is_not_checked_again(
    db_settings: Settings, session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A phone with the old password polls every few minutes: Dovecot's auth penalty does
    not grow for the same user and password, and neither does our count; the remembered
    wrong password is answered without an argon2 check."""
    hashing = PasswordHashing(db_settings.security)
    pop_account = add_address(session_factory, hashing, ADDRESS)
    checked: list[str] = []
    verify = hashing.verify_or_spend

    def spy(hashed: str | None, password: str) -> bool:
        checked.append(password)
        return verify(hashed, password)

    monkeypatch.setattr(hashing, "verify_or_spend", spy)
    guard = make_guard(session_factory, FrozenClock())
    auth = Authenticator(session_factory, hashing, guard)
    for _ in range(10):
        result = await auth.authenticate(pop_account, "Old.pass1", peer_ip=IP, listener="t")
        assert result.outcome is AuthOutcome.BAD_CREDENTIALS
    assert checked == ["Old.pass1"]
    assert await guard.failures(key=pair_key(pop_account, IP)) == 1
    assert await guard.failures(key=account_key(pop_account)) == 1
    assert (await auth.authenticate(pop_account, PASSWORD, peer_ip=IP, listener="t")).ok
    # Different wrong passwords are guesses: three lock this client out of the account.
    for n in range(2):
        await auth.authenticate(pop_account, f"guess{n}", peer_ip=IP, listener="t")
    locked = await auth.authenticate(pop_account, PASSWORD, peer_ip=IP, listener="t")
    assert locked.outcome is AuthOutcome.LOCKED


async def test_a_remembered_wrong_password_that_becomes_the_password_works(
    db_settings: Settings, session_factory: sessionmaker[Session],
) -> None:
    """Remembered wrong passwords are bound to the stored hash: a customer who sets the
    old password again (the one the phone still has) is let in at once."""
    hashing = PasswordHashing(db_settings.security)
    pop_account = add_address(session_factory, hashing, ADDRESS)
    auth = Authenticator(session_factory, hashing, make_guard(session_factory, FrozenClock()))
    for _ in range(2):
        assert not (await auth.authenticate(pop_account, "Old.pass1", peer_ip=IP,
                                            listener="t")).ok
    with session_factory() as session, session.begin():
        session.execute(update(Address).where(Address.pop_account == pop_account)
                        .values(password_hash=hashing.hash("Old.pass1")))
    assert (await auth.authenticate(pop_account, "Old.pass1", peer_ip=IP, listener="t")).ok


async def test_an_ip_is_locked_only_when_many_different_accounts_fail_from_it(
    session_factory: sessionmaker[Session],
) -> None:
    clock = FrozenClock()
    guard = make_guard(session_factory, clock, ip_max_accounts=4)
    for n in range(10):  # one account, many guesses: that client and account only
        await guard.record_failure(peer_ip=IP, account="m1", digest=f"{n:016x}")
    assert await guard.locked_until(peer_ip=IP, account="m1") is not None
    assert await guard.locked_until(peer_ip=IP, account="m2") is None
    for account in ("m2", "m3"):
        await guard.record_failure(peer_ip=IP, account=account)
    assert await guard.locked_until(peer_ip=IP, account="m9") is None
    await guard.record_failure(peer_ip=IP, account="m4")  # the fourth account: stuffing
    assert await guard.locked_until(peer_ip=IP, account="m9") is not None
    assert await guard.locked_until(peer_ip="192.0.2.11", account="m9") is None


async def test_a_doubled_lock_outlasts_the_window_it_was_counted_in(
    session_factory: sessionmaker[Session],
) -> None:
    """A lock longer than the counting window used to end at the next attempt after the
    window: the counter "started over" and dropped its running lock."""
    clock = FrozenClock()
    guard = make_guard(session_factory, clock, ip_max_accounts=2, max_lock_seconds=600)
    for account in ("a1", "a2"):
        await guard.record_failure(peer_ip=IP, account=account)
    clock.advance(timedelta(seconds=60))  # the first lock (60 s) is over
    for account in ("a3", "a4"):
        await guard.record_failure(peer_ip=IP, account=account)
    until = await guard.locked_until(peer_ip=IP, account="a5")
    assert until == clock.now() + timedelta(seconds=120)
    clock.advance(timedelta(seconds=90))  # past the window, inside the lock
    attempt = await guard.begin(peer_ip=IP, account="a5")
    assert not attempt.allowed and attempt.locked_until == until
    assert await guard.locked_until(peer_ip=IP, account="a5") == until


async def test_exempt_networks_are_never_locked_as_a_whole(
    session_factory: sessionmaker[Session],
) -> None:
    """The ISP's webmail signs every customer in from one address."""
    guard = make_guard(session_factory, FrozenClock(), ip_max_accounts=2,
                       exempt_networks=["192.0.2.0/24"])
    for n in range(6):
        await guard.record_failure(peer_ip=IP, account=f"w{n}")
    assert await guard.locked_until(peer_ip=IP, account="fresh") is None
    assert (await guard.begin(peer_ip=IP, account="fresh")).allowed
    for n in range(3):  # one account guessed through it is still stopped
        await guard.record_failure(peer_ip=IP, account="victim", digest=f"{n:016x}")
    assert await guard.locked_until(peer_ip=IP, account="victim") is not None


async def test_a_webmail_host_relays_mail_logins_and_is_no_household(
    session_factory: sessionmaker[Session],
) -> None:
    """[webmail] networks: an address that speaks for all the webmail's users is never
    locked as one IP for the mail protocols (each account guessed through it still is);
    for the portal, which the webmail does not sign in to, it is an address like any."""
    guard = make_guard(session_factory, FrozenClock(), ip_max_accounts=2,
                       relay_networks=["192.0.2.0/24"])
    for n in range(6):
        await guard.record_failure(peer_ip=IP, account=f"w{n}")
    assert await guard.locked_until(peer_ip=IP, account="fresh") is None
    for n in range(3):
        await guard.record_failure(peer_ip=IP, account="victim", digest=f"{n:016x}")
    assert await guard.locked_until(peer_ip=IP, account="victim") is not None
    for n in range(3):
        await guard.record_failure(peer_ip=IP, account=f"p{n}", budget=PORTAL)
    assert await guard.locked_until(peer_ip=IP, account="fresh", budget=PORTAL) is not None


async def test_the_portal_and_the_mail_protocols_have_separate_budgets(
    session_factory: sessionmaker[Session],
) -> None:
    guard = make_guard(session_factory, FrozenClock(), ip_max_accounts=2)
    for account in ("m1", "m2"):  # the IP is locked for mail ...
        for n in range(3):
            await guard.record_failure(peer_ip=IP, account=account, digest=f"{n:016x}")
    assert await guard.locked_until(peer_ip=IP, account="m3") is not None
    # ... while the same router's portal sign-ins, even of those accounts, are not
    # (the accounts are locked, but only for clients that failed them in that budget).
    for account in ("m1", "m3", "contract:c0001"):
        assert await guard.locked_until(peer_ip=IP, account=account, budget=PORTAL) is None
        attempt = await guard.begin(peer_ip=IP, account=account, budget=PORTAL)
        assert attempt.allowed
        await guard.succeeded(attempt)


async def test_full_width_user_names_are_the_ascii_ones(
    db_settings: Settings, session_factory: sessionmaker[Session],
) -> None:
    """An IME left on types ｈａｎａｋｏ＠ａ０１．ｅｘａｍｐｌｅ．ｎｅｔ: the same
    address, not a failure."""
    hashing = PasswordHashing(db_settings.security)
    pop_account = add_address(session_factory, hashing, ADDRESS)
    guard = make_guard(session_factory, FrozenClock())
    auth = Authenticator(session_factory, hashing, guard)
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in ADDRESS)
    assert full_width != ADDRESS
    result = await auth.authenticate(f" {full_width}\u3000", PASSWORD, peer_ip=IP,
                                     listener="t")
    assert result.ok and result.pop_account == pop_account
    assert await guard.failures(key=ip_key(IP)) == 0


async def test_a_familiar_client_is_not_refused_because_strangers_locked_the_account(
    session_factory: sessionmaker[Session],
) -> None:
    clock = FrozenClock()
    guard = make_guard(session_factory, clock)
    home = await guard.begin(peer_ip=IP, account="m1")
    await guard.succeeded(home)  # the PC at home signed in
    await guard.record_failure(peer_ip=IP, account="m1", digest="0" * 16)  # the phone
    for n in range(3):  # strangers, one guess each
        await guard.record_failure(peer_ip=f"198.51.100.{n}", account="m1",
                                   digest=f"{n + 1:016x}")
    assert await guard.locked_until(peer_ip="198.51.100.0", account="m1") is not None
    assert await guard.locked_until(peer_ip=IP, account="m1") is None
    assert (await guard.begin(peer_ip=IP, account="m1")).allowed
    # Familiarity lasts login_max_lock_seconds (60 s here) after the last success.
    clock.advance(timedelta(seconds=61))
    for n in range(3):
        await guard.record_failure(peer_ip=f"198.51.100.{n + 5}", account="m1",
                                   digest=f"{n + 9:016x}")
    assert await guard.locked_until(peer_ip=IP, account="m1") is not None


def test_lock_lines_name_an_account_by_its_tag_never_as_typed(
    session_factory: sessionmaker[Session],
) -> None:
    """A password typed into the user field is the "account" of a failed login: the
    guard's lock lines show a keyed tag instead (README: secrets never in logs), the same
    one ``mailplane login-tag`` prints for the operator looking for an account's lines."""
    guard = LoginGuard(session_factory, FrozenClock(), max_failures=3, lock_seconds=60,
                       base_delay_seconds=0, secret="s3cret")
    typed = "Haru no umi.2026"  # spaces too
    tag = account_tag("s3cret", typed)
    assert tag.startswith("acct-") and typed.lower() not in tag
    assert guard.loggable(pair_key(typed, IP)) == f"pair:{IP} {tag}"
    assert guard.loggable(pair_key(typed, IP, PORTAL)) == f"portal:pair:{IP} {tag}"
    assert guard.loggable(account_key(typed)) == f"account:{tag}"
    assert guard.loggable(ip_key(IP)) == f"ip:{IP}"
    assert account_tag("s3cret", typed.upper()) == tag  # accounts compare without case
    assert account_tag("another secret", typed) != tag
