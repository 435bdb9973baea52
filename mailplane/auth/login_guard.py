"""Brute-force protection for every sign-in — POP3, submission, IMAP and the portal —
that tells attackers from families (issues 5, 15, 22; SPEC §8a).

After Dovecot's auth penalty (the same user and password again does not raise the
penalty), fail2ban's per-jail thresholds and growing bans, and large providers' account
protection (Azure AD smart lockout: the last few wrong passwords are remembered and not
counted twice; familiar clients are not locked out by strangers' failures).  Counters live
in the ``login_failures`` table, so an attack spread over several nodes is counted once.

Three counters, each in its **budget** — the mail protocols share one, the portal has its
own, so a family's phones failing over POP3 never touch the contract holder's sign-in:

- **Per (account, client)** — the client is its IP, or for IPv6 its /64.  Counted
  *before* the password is checked, atomically (:meth:`LoginGuard.begin`): a pair whose
  failures plus attempts in flight reach ``login_max_failures`` has no attempt checked
  until one in flight ends — 40 parallel guesses at one account from one IP get exactly
  that many checks, on SQLite and PostgreSQL.  At the limit the pair is locked for
  ``login_lock_seconds``, each further lock twice as long (up to
  ``login_max_lock_seconds``).  The **same wrong password** as one this pair already
  failed with (a phone with an old password, polling) is answered "wrong" without a
  check and counts nothing: it is no new guess.
- **Per account**, all clients together: ``login_max_failures`` different wrong
  passwords lock the account *for clients whose own pair has failed* and that have not
  signed in to it with the right password within ``login_max_lock_seconds`` (a familiar
  client).  A distributed guesser gets about one try per fresh IP; a client that has not
  failed — the owner at home, a family member — still signs in with the right password,
  and so does the owner's PC at home while the phone there keeps failing.
- **Per client IP**: the number of *different accounts* failing from it.  A household has
  a handful of addresses; credential stuffing tries hundreds.  At
  ``login_ip_max_accounts`` the IP is locked for every account (growing locks); its
  attempts in flight count against that budget until they end, so a parallel burst is
  bounded too.  Networks in ``security.limit_exempt_networks`` are never locked as a
  whole; their pairs and accounts are.

**The webmail hosts** (``[webmail] networks``) relay their users' logins to IMAP and
submission: an address among them is no household but every webmail user at once, so in
the mail budget it is never counted or locked as one IP — many users failing through the
webmail must not lock out the rest.  What is counted instead is the real client, which
the webmail reports and the callers pass as ``peer_ip``: the browser's address in the
webmail's own sign-in, Dovecot's ``rip`` (from Roundcube's IMAP ID ``x-originating-ip``,
Dovecot's ``login_trusted_networks``), submission's ``XCLIENT ADDR``
(:mod:`mailplane.smtp.submission_protocol`).  A login that arrives from a webmail host
without the client's address still counts for its pair and its account.

An attempt that finds a budget taken only by attempts still in flight waits for them (up
to :data:`BUSY_WAIT_SECONDS`) instead of being refused, so a burst of right passwords
behind one NAT address is served.  Each failure (and each refusal) is answered after a
growing, capped delay.  A success clears the account's counter, never the pair's or the
IP's: one valid login cannot wash the record of a client guessing other passwords.

Wrong passwords are remembered as keyed digests (HMAC-SHA256 under ``security.
login_secret``, bound to the stored password hash, so they expire with it): the database
alone lets nobody test guesses against them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.failed_logins import login_log
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.net.limits import client_key, in_networks, parse_networks
from mailplane.storage import login_failure_repo
from mailplane.storage.state_dir import secret_file

log = logging.getLogger(__name__)
#: A refusal or a lock per attempt under attack: within the failed-login line budget.
_throttled = login_log(log)

Sleep = Callable[[float], Awaitable[None]]

#: The mail protocols (POP3, submission, IMAP) share one budget; the portal has its own.
Budget = Literal["mail", "portal"]
MAIL: Budget = "mail"
PORTAL: Budget = "portal"

#: How long an attempt waits for attempts in flight to finish before it is refused (a
#: check takes a fraction of a second).
BUSY_WAIT_SECONDS = 10.0
_BUSY_STEP_SECONDS = 0.05
#: Hex characters of a remembered wrong password's digest (64 bits: a right password
#: taken for a remembered wrong one is a 2^-62 event).
DIGEST_HEX = 16

#: Why an attempt was refused unchecked (``mailplane_limit_refusals_total{limit}``).
Refusal = Literal["login_ip", "login_client", "login_account", "login_busy"]


def _prefix(budget: Budget) -> str:
    # The mail budget keeps the keys it had before budgets existed.
    return "" if budget == MAIL else f"{budget}:"


def ip_key(peer_ip: str, budget: Budget = MAIL) -> str:
    """The counter of a client IP: its address, or for IPv6 its /64 (one subscriber's
    block: rotating addresses inside it must not reset the count)."""
    return f"{_prefix(budget)}ip:{client_key(peer_ip)}"


def account_key(account: str) -> str:
    """One account's counter, shared by every budget (it refuses only clients that have
    failed the account in the budget they sign in through)."""
    return f"account:{account.lower()}"


def pair_key(account: str, peer_ip: str, budget: Budget = MAIL) -> str:
    """The counter of one account from one client (the IP never holds a space)."""
    return f"{_prefix(budget)}pair:{client_key(peer_ip)} {account.lower()}"


#: Hex digits of an account's tag in log lines (:func:`account_tag`).
TAG_HEX = 10


def account_tag(secret: str, account: str) -> str:
    """How log lines name an account: a digest of the name as typed, keyed with
    ``security.login_secret`` — never the name itself, since a password typed into the
    user field would otherwise reach the log (README: secrets never in logs), and the key
    keeps anyone who reads the log from trying candidates offline.  ``mailplane
    login-tag ACCOUNT`` prints the tag an operator looks for."""
    key = hashlib.sha256(b"mailplane login log tags\0" + secret.encode()).digest()
    digest = hmac.new(key, account.lower().encode("utf-8", "surrogatepass"), hashlib.sha256)
    return "acct-" + digest.hexdigest()[:TAG_HEX]


def _kind(key: str) -> str:
    """A counter's kind — ``ip``, ``pair``, ``account``, ``portal:ip``, ``portal:pair`` —
    without the client or the account (the throttle key of its lock lines)."""
    head, _, rest = key.partition(":")
    return f"{head}:{rest.partition(':')[0]}" if head == "portal" else head


def login_secret(settings: Settings) -> str:
    """``security.login_secret``, or one generated into ``<state_dir>/login-guard.secret``."""
    configured = settings.security.login_secret.get_secret_value()
    return configured or secret_file(settings.state_dir / "login-guard.secret")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One login attempt as the guard admitted (or refused) it."""

    peer_ip: str
    account: str
    allowed: bool
    budget: Budget = MAIL
    #: The keyed digest of the password tried ("" when none was given).
    digest: str = ""
    #: Failures behind this attempt (the pair's or the IP's): the delay grows with them.
    failures: int = 0
    locked_until: datetime | None = None
    #: Refused only because a budget is taken by attempts still in flight.
    busy: bool = False
    #: The same wrong password this client already failed with: not checked, not counted.
    repeated: bool = False
    refusal: Refusal | None = None

    @property
    def ip_failures(self) -> int:
        """Kept for callers of the issue-15 guard: the failures behind this attempt."""
        return self.failures


class LoginGuard:
    """Shared failure counters, delays and temporary locks."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        clock: Clock,
        *,
        max_failures: int,
        lock_seconds: int,
        ip_max_accounts: int | None = None,
        max_lock_seconds: int | None = None,
        base_delay_seconds: float = 0.5,
        max_delay_seconds: float = 5.0,
        secret: str | None = None,
        exempt_networks: Iterable[str] = (),
        relay_networks: Iterable[str] = (),
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self.max_failures = max_failures
        self.ip_max_accounts = ip_max_accounts or max_failures
        self.lock_seconds = lock_seconds
        self.max_lock_seconds = max(max_lock_seconds or lock_seconds, lock_seconds)
        self._base_delay = base_delay_seconds
        self._max_delay = max_delay_seconds
        secret = secret or secrets.token_urlsafe(32)
        self._key = hashlib.sha256(b"mailplane login digests\0" + secret.encode()).digest()
        self._tag_secret = secret
        self._exempt = parse_networks(exempt_networks)
        self._relays = parse_networks(relay_networks)
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
            ip_max_accounts=security.login_ip_max_accounts,
            lock_seconds=security.login_lock_seconds,
            max_lock_seconds=security.login_max_lock_seconds,
            base_delay_seconds=security.login_base_delay_seconds,
            max_delay_seconds=security.login_max_delay_seconds,
            secret=login_secret(settings),
            exempt_networks=security.limit_exempt_networks,
            relay_networks=settings.webmail.networks,
            sleep=sleep,
        )

    def delay_after(self, failures: int) -> float:
        """Doubling delay per failure, capped: 0.5, 1, 2, 4, 5, 5 … seconds by default."""
        if failures <= 0 or self._base_delay <= 0:
            return 0.0
        return float(min(self._base_delay * 2 ** min(failures - 1, 30), self._max_delay))

    def password_digest(self, *, account: str, stored_hash: str | None, password: str) -> str:
        """The keyed digest a wrong password is remembered by.  Bound to the stored hash:
        after a password change the old wrong passwords are forgotten (one of them may
        be the new password)."""
        message = "\0".join((account.lower(), stored_hash or "", password))
        return hmac.new(self._key, message.encode("utf-8", "surrogatepass"),
                        hashlib.sha256).hexdigest()[:DIGEST_HEX]

    def loggable(self, key: str) -> str:
        """A counter's key as a log line shows it: the account replaced by its
        :func:`account_tag` (``pair:203.0.113.5 acct-…``, ``account:acct-…``)."""
        if key.startswith("account:"):
            return "account:" + account_tag(self._tag_secret, key.removeprefix("account:"))
        head, space, account = key.partition(" ")  # pair keys: "<prefix>pair:<ip> <account>"
        if space:
            return f"{head} {account_tag(self._tag_secret, account)}"
        return key

    def _account_lock_applies(self, pair: login_failure_repo.Reservation,
                              now: datetime) -> bool:
        """Whether a locked account refuses this client: only if the client has failed
        the account itself and has not signed in to it lately (not familiar)."""
        familiar = pair.last_success_at is not None and (
            now - pair.last_success_at).total_seconds() < self.max_lock_seconds
        return pair.failures > 0 and not familiar

    def _exempt_ip(self, peer_ip: str, budget: Budget) -> bool:
        """Never counted or locked as a whole IP: an exempt network, or — for the mail
        protocols — a webmail host speaking for its users (see the module docstring)."""
        if self._exempt and in_networks(peer_ip, self._exempt):
            return True
        return budget == MAIL and bool(self._relays) and in_networks(peer_ip, self._relays)

    # --- one attempt ----------------------------------------------------------------

    async def begin(self, *, peer_ip: str, account: str, digest: str = "",
                    budget: Budget = MAIL) -> Attempt:
        """Count the attempt before its password is checked and decide whether it may be
        checked at all (one transaction: atomic on SQLite and PostgreSQL).  While a budget
        is taken only by attempts in flight, wait for them."""
        waited, step = 0.0, _BUSY_STEP_SECONDS
        while True:
            attempt = await self._reserve(peer_ip=peer_ip, account=account, digest=digest,
                                          budget=budget)
            if not attempt.busy or waited >= BUSY_WAIT_SECONDS:
                break
            await asyncio.sleep(step)
            waited += step
            step = min(step * 2, 0.5)
        if not attempt.allowed and not attempt.repeated:
            _throttled.info(("refused", budget), "login refused unchecked (%s): peer %s, %s "
                            "budget", attempt.refusal, peer_ip, budget)
        return attempt

    async def _reserve(self, *, peer_ip: str, account: str, digest: str,
                       budget: Budget) -> Attempt:
        now = self._clock.now()
        exempt = self._exempt_ip(peer_ip, budget)
        ip, pair = ip_key(peer_ip, budget), pair_key(account, peer_ip, budget)

        def write() -> Attempt:
            # Rows are always taken in one order — IP, pair, account — so two
            # transactions never wait for each other in a circle (PostgreSQL).
            with self._session_factory() as session, session.begin():
                at_ip = login_failure_repo.reserve_attempt(
                    session, key=ip, now=now, window_seconds=self.lock_seconds)
                at_pair = login_failure_repo.reserve_attempt(
                    session, key=pair, now=now, window_seconds=self.lock_seconds)
                failures = max(at_pair.failures, 0 if exempt else at_ip.failures)

                def running(moment: datetime | None) -> datetime | None:
                    return moment if moment is not None and moment > now else None

                refusal: Refusal | None = None
                locked = None if exempt else running(at_ip.locked_until)
                if locked is not None:
                    refusal = "login_ip"
                else:
                    locked = running(at_pair.locked_until)
                    refusal = "login_client" if locked is not None else None
                busy = locked is None and (
                    at_pair.failures + at_pair.in_flight > self.max_failures
                    or (not exempt
                        and at_ip.failures + at_ip.in_flight > self.ip_max_accounts))
                if busy:
                    refusal = "login_busy"
                # The account's lock refuses only clients whose own pair has failed and
                # that are not familiar: a household's devices are not refused because of
                # failures elsewhere.
                if locked is None and not busy and self._account_lock_applies(at_pair, now):
                    locked = login_failure_repo.latest_lock(
                        session, keys=(account_key(account),), now=now)
                    refusal = "login_account" if locked is not None else None
                repeated = (locked is None and not busy and bool(digest)
                            and digest in at_pair.wrong_digests)
                if locked is None and not busy and not repeated:
                    return Attempt(peer_ip, account, True, budget, digest, failures)
                login_failure_repo.release_attempt(session, key=pair)
                login_failure_repo.release_attempt(session, key=ip)
                return Attempt(peer_ip, account, False, budget, digest, failures,
                               locked or (None if repeated else now), busy, repeated,
                               refusal)

        return await asyncio.to_thread(write)

    async def failed(self, attempt: Attempt, *, delay: bool = True) -> None:
        """The password was wrong: a failure for the pair and the account — unless the
        pair or the account already remembers this wrong password — and, for the pair's
        first failure, one more failing account for the IP; then the delay."""
        now = self._clock.now()
        exempt = self._exempt_ip(attempt.peer_ip, attempt.budget)
        ip = ip_key(attempt.peer_ip, attempt.budget)
        pair = pair_key(attempt.account, attempt.peer_ip, attempt.budget)
        account = account_key(attempt.account)

        def write() -> int:
            with self._session_factory() as session, session.begin():
                login_failure_repo.release_attempt(session, key=ip)  # IP row first
                at_pair = login_failure_repo.count_failure(
                    session, key=pair, now=now, window_seconds=self.lock_seconds,
                    max_failures=self.max_failures, lock_seconds=self.lock_seconds,
                    max_lock_seconds=self.max_lock_seconds, digest=attempt.digest,
                    in_flight=True)
                counted = [(pair, at_pair)]
                if at_pair.counted:
                    counted.append((account, login_failure_repo.count_failure(
                        session, key=account, now=now, window_seconds=self.lock_seconds,
                        max_failures=self.max_failures, lock_seconds=self.lock_seconds,
                        digest=attempt.digest)))
                if at_pair.counted and at_pair.failures == 1:
                    # A new account failing from this IP (credential stuffing's signal).
                    counted.append((ip, login_failure_repo.count_failure(
                        session, key=ip, now=now, window_seconds=self.lock_seconds,
                        max_failures=(self.ip_max_accounts if not exempt else 2 ** 31),
                        lock_seconds=self.lock_seconds,
                        max_lock_seconds=self.max_lock_seconds)))
            for key, count in counted:
                if count.counted and count.locked_until is not None \
                        and count.locked_until > now:
                    _throttled.warning(("locked", _kind(key)), "login locked "
                                       "for %s until %s after %d failures",
                                       self.loggable(key),
                                       count.locked_until.isoformat(), count.failures)
            return max(count.failures for _key, count in counted)

        failures = await asyncio.to_thread(write)
        if delay:
            await self._delay(failures)

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the places in flight back, the pair remembered as
        familiar, the account's failures cleared (the pair's and the IP's stay: see the
        module's docstring)."""
        ip = ip_key(attempt.peer_ip, attempt.budget)
        pair = pair_key(attempt.account, attempt.peer_ip, attempt.budget)
        now = self._clock.now()

        def write() -> None:
            with self._session_factory() as session, session.begin():
                login_failure_repo.release_attempt(session, key=ip)
                login_failure_repo.release_attempt(session, key=pair, succeeded_at=now)
                login_failure_repo.clear(session, key=account_key(attempt.account))

        await asyncio.to_thread(write)

    async def refused(self, attempt: Attempt) -> None:
        """Slow down a client that keeps trying while refused, or sends a password it
        already failed with (Dovecot's auth penalty)."""
        await self._delay(attempt.failures)

    async def _delay(self, failures: int) -> None:
        delay = self.delay_after(failures)
        if delay:
            await self._sleep(delay)

    # --- reads and whole failures (status pages, tests, the purge job) ---------------

    async def locked_until(self, *, peer_ip: str, account: str,
                           budget: Budget = MAIL) -> datetime | None:
        """When a login from ``peer_ip`` to ``account`` is allowed again: the IP's lock,
        the pair's, or the account's if it applies to this client; None if allowed now."""
        now = self._clock.now()
        exempt = self._exempt_ip(peer_ip, budget)

        def read() -> datetime | None:
            with self._session_factory() as session:
                keys = [pair_key(account, peer_ip, budget)]
                if not exempt:
                    keys.append(ip_key(peer_ip, budget))
                lock = login_failure_repo.latest_lock(session, keys=keys, now=now)
                if lock is not None:
                    return lock
                pair = login_failure_repo.read_counter(
                    session, key=pair_key(account, peer_ip, budget))
                if pair is None or not self._account_lock_applies(pair, now):
                    return None
                return login_failure_repo.latest_lock(
                    session, keys=(account_key(account),), now=now)

        return await asyncio.to_thread(read)

    async def record_failure(self, *, peer_ip: str, account: str, digest: str = "",
                             budget: Budget = MAIL) -> None:
        """Count one whole failed attempt (reserved, then failed), then wait the delay."""
        now = self._clock.now()

        def reserve() -> None:
            with self._session_factory() as session, session.begin():
                for key in (ip_key(peer_ip, budget), pair_key(account, peer_ip, budget)):
                    login_failure_repo.reserve_attempt(
                        session, key=key, now=now, window_seconds=self.lock_seconds)

        await asyncio.to_thread(reserve)
        await self.failed(Attempt(peer_ip, account, True, budget, digest))

    async def record_success(self, *, account: str) -> None:
        def write() -> None:
            with self._session_factory() as session, session.begin():
                login_failure_repo.clear(session, key=account_key(account))

        await asyncio.to_thread(write)

    async def purge_stale(self) -> int:
        """Drop counters that no longer matter (the housekeeping job calls this); a
        client's lock history is kept for ``login_max_lock_seconds`` after its last
        failure."""
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
