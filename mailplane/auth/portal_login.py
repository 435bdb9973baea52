"""Portal sign-in checks (SPEC §10, 004 "マイページ ログイン"): contract holders with their
customer number and contract password, mailbox users with their address (or POP account)
and POP password.

Both go through the :class:`LoginGuard` in its **portal budget** (issue 22): failures
counted per (account, client), per account and per client IP as for POP3 and submission,
but in counters of their own, so a family's mail programs failing with an old password
never lock the contract holder's sign-in, and the other way round.  The per-account
counter is shared: an account locked by guesses anywhere refuses every client that has
failed it.  A mailbox sign-in *is* a POP credential check (:class:`Authenticator`).
Unknown customer numbers cost the same argon2 work as known ones and fail the same way;
full-width input is read as ASCII (:func:`login_name`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.auth.credentials import Authenticator, AuthOutcome, login_name
from mailplane.auth.failed_logins import FailedLogins
from mailplane.auth.login_guard import PORTAL, LoginGuard
from mailplane.auth.passwords import PasswordHashing, generate_password
from mailplane.storage import web_sessions_repo

log = logging.getLogger(__name__)
_failed = FailedLogins(log)
#: The listener label of the portal's sign-ins (metrics, log lines, the guard's budget).
LISTENER = "portal"

#: Longest customer number worth a lookup (the column is 32 characters).
MAX_CUSTOMER_NUMBER = 32


#: A portal sign-in ends the way a mailbox login does (the same five outcomes).
LoginOutcome = AuthOutcome


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: LoginOutcome
    contract_id: int | None = None
    address_id: int | None = None
    locked_until: datetime | None = None
    #: What the session is stamped with: the contract's password hash for a contract
    #: holder, the address's for a mailbox user (:func:`credential_stamp`).
    contract_stamp: str | None = None
    address_stamp: str | None = None


def credential_stamp(password_hash: str | None, *, active: bool = True) -> str:
    """A short digest of a stored password hash (and, for a contract holder, whether the
    contract is active).  A portal session keeps the stamp of what it signed in with;
    when the password is changed, reissued or reset — by the portal, the API or the CLI,
    on any node — or the contract is suspended or resumed, the stamp differs and the
    session ends at its next request (issue 20).  (A future rehash-on-login would have to
    restamp the sessions of the hash it replaces.)"""
    state = b"" if active else b"\0suspended"
    digest = hashlib.sha256(b"mailplane session stamp\0" + (password_hash or "").encode()
                            + state)
    return digest.hexdigest()[:32]


def contract_account(customer_number: str) -> str:
    """The guard's account name for a contract sign-in (never a POP account name)."""
    return f"contract:{customer_number[:MAX_CUSTOMER_NUMBER].lower()}"


class PortalLogin:
    def __init__(self, session_factory: sessionmaker[Session], hashing: PasswordHashing,
                 guard: LoginGuard) -> None:
        self._session_factory = session_factory
        self._hashing = hashing
        self._guard = guard
        self._mailboxes = Authenticator(session_factory, hashing, guard, budget=PORTAL)

    async def contract(self, customer_number: str, password: str, *,
                       peer_ip: str) -> LoginResult:
        customer_number = login_name(customer_number)
        account = contract_account(customer_number)
        try:
            found = await asyncio.to_thread(self._lookup, customer_number)
            hashed = found.password_hash if found else None
            digest = self._guard.password_digest(account=account, stored_hash=hashed,
                                                 password=password)
            # Counted before the password is checked (issue 15), like a POP3 login.
            attempt = await self._guard.begin(peer_ip=peer_ip, account=account,
                                              digest=digest, budget=PORTAL)
        except SQLAlchemyError as exc:
            _failed.unavailable(LISTENER, "portal sign-in: database unavailable: %s",
                                type(exc).__name__)
            return LoginResult(LoginOutcome.UNAVAILABLE)
        if attempt.repeated:
            metrics.LOGIN_FAILURES.labels(LISTENER, "same_password").inc()
            await self._guard.refused(attempt)
            return LoginResult(LoginOutcome.BAD_CREDENTIALS)
        if not attempt.allowed:
            _failed.record(LISTENER, "locked", "portal sign-in refused while locked: peer %s",
                           peer_ip)
            metrics.LIMIT_REFUSALS.labels(LISTENER, attempt.refusal or "login").inc()
            await self._guard.refused(attempt)
            return LoginResult(LoginOutcome.LOCKED, locked_until=attempt.locked_until)
        try:
            matches = await asyncio.to_thread(self._hashing.verify_or_spend, hashed, password)
            if not matches or found is None:
                _failed.record(LISTENER, "wrong_password", "portal contract sign-in failed: "
                               "peer %s", peer_ip)
                await self._guard.failed(attempt)
                return LoginResult(LoginOutcome.BAD_CREDENTIALS)
            await self._guard.succeeded(attempt)
        except SQLAlchemyError as exc:
            _failed.unavailable(LISTENER, "portal sign-in: guard unavailable: %s",
                                type(exc).__name__)
            return LoginResult(LoginOutcome.UNAVAILABLE)
        if found.status == "terminated":
            # 003 Art.20(4): after 解約 the ID and password open nothing — said only to
            # whoever knows the password, so it reveals nothing to anyone else.
            log.info("portal sign-in of terminated contract %s refused", found.customer_number)
            return LoginResult(LoginOutcome.SUSPENDED, contract_id=found.contract_id)
        # The holder of a suspended contract may sign in and look; every change is the
        # operator's (api/deps.py: writable_contract; 003 Art.16/20).
        log.info("portal contract sign-in: %s from %s", found.customer_number, peer_ip)
        return LoginResult(LoginOutcome.OK, contract_id=found.contract_id,
                           contract_stamp=credential_stamp(hashed, active=found.active))

    async def mailbox(self, username: str, password: str, *, peer_ip: str) -> LoginResult:
        result = await self._mailboxes.authenticate(username, password, peer_ip=peer_ip,
                                                    listener=LISTENER)
        outcome = result.outcome
        if outcome is not LoginOutcome.OK or result.address_id is None:
            return LoginResult(outcome, locked_until=result.locked_until)
        try:
            found = await asyncio.to_thread(self._contract_of, result.address_id)
        except SQLAlchemyError:
            return LoginResult(LoginOutcome.UNAVAILABLE)
        if found is None:  # deleted between the check and now
            return LoginResult(LoginOutcome.BAD_CREDENTIALS)
        return LoginResult(LoginOutcome.OK, contract_id=found,
                           address_id=result.address_id,
                           address_stamp=credential_stamp(result.password_hash))

    def _lookup(self, customer_number: str) -> web_sessions_repo.ContractLogin | None:
        if not customer_number or len(customer_number) > MAX_CUSTOMER_NUMBER:
            return None
        with self._session_factory() as session:
            return web_sessions_repo.contract_login(session, customer_number=customer_number)

    def _contract_of(self, address_id: int) -> int | None:
        with self._session_factory() as session:
            return web_sessions_repo.contract_of_address(session, address_id=address_id)


def issue_contract_password(session: Session, hashing: PasswordHashing, *, contract_id: int,
                            now: datetime, length: int) -> str:
    """Set a new random contract password; return it, to be shown once (like a reissued
    POP password, SPEC §1).  Every contract holder's portal session ends with it: each was
    stamped with the hash it signed in under (:mod:`mailplane.api.web_session`).
    Blocking; the caller audits and commits."""
    password = generate_password(length)
    web_sessions_repo.set_contract_password(session, contract_id=contract_id,
                                            password_hash=hashing.hash(password), now=now)
    return password
