"""Portal sign-in checks (SPEC §10, 004 "マイページ ログイン"): contract holders with their
customer number and contract password, mailbox users with their address (or POP account)
and POP password.

Both go through the same :class:`LoginGuard` as POP3 and submission — failures counted per
client IP and per account, growing delays, temporary locks — through its public methods
only.  A mailbox sign-in *is* a POP credential check (:class:`Authenticator`), so guessing a
POP password through the portal counts against the same account as guessing it over POP3.
Unknown customer numbers cost the same argon2 work as known ones and fail the same way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator, AuthOutcome
from mailplane.auth.login_guard import LoginGuard
from mailplane.auth.passwords import PasswordHashing, generate_password
from mailplane.storage import web_sessions_repo

log = logging.getLogger(__name__)

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


def contract_account(customer_number: str) -> str:
    """The guard's account name for a contract sign-in (never a POP account name)."""
    return f"contract:{customer_number[:MAX_CUSTOMER_NUMBER].lower()}"


class PortalLogin:
    def __init__(self, session_factory: sessionmaker[Session], hashing: PasswordHashing,
                 guard: LoginGuard) -> None:
        self._session_factory = session_factory
        self._hashing = hashing
        self._guard = guard
        self._mailboxes = Authenticator(session_factory, hashing, guard)

    async def contract(self, customer_number: str, password: str, *,
                       peer_ip: str) -> LoginResult:
        customer_number = customer_number.strip()
        account = contract_account(customer_number)
        try:
            found = await asyncio.to_thread(self._lookup, customer_number)
            # Counted before the password is checked (issue 15), like a POP3 login.
            attempt = await self._guard.begin(peer_ip=peer_ip, account=account)
        except SQLAlchemyError as exc:
            log.error("portal sign-in: database unavailable: %s", type(exc).__name__)
            return LoginResult(LoginOutcome.UNAVAILABLE)
        if not attempt.allowed:
            log.info("portal sign-in refused while locked: peer %s", peer_ip)
            await self._guard.refused(attempt)
            return LoginResult(LoginOutcome.LOCKED, locked_until=attempt.locked_until)
        hashed = found.password_hash if found else None
        try:
            matches = await asyncio.to_thread(self._hashing.verify_or_spend, hashed, password)
            if not matches or found is None:
                log.info("portal contract sign-in failed: peer %s", peer_ip)
                await self._guard.failed(attempt)
                return LoginResult(LoginOutcome.BAD_CREDENTIALS)
            await self._guard.succeeded(attempt)
        except SQLAlchemyError as exc:
            log.error("portal sign-in: guard unavailable: %s", type(exc).__name__)
            return LoginResult(LoginOutcome.UNAVAILABLE)
        if found.status == "terminated":
            # 003 Art.20(4): after 解約 the ID and password open nothing — said only to
            # whoever knows the password, so it reveals nothing to anyone else.
            log.info("portal sign-in of terminated contract %s refused", found.customer_number)
            return LoginResult(LoginOutcome.SUSPENDED, contract_id=found.contract_id)
        log.info("portal contract sign-in: %s from %s", found.customer_number, peer_ip)
        return LoginResult(LoginOutcome.OK, contract_id=found.contract_id)

    async def mailbox(self, username: str, password: str, *, peer_ip: str) -> LoginResult:
        result = await self._mailboxes.authenticate(username, password, peer_ip=peer_ip,
                                                    listener="portal")
        outcome = result.outcome
        if outcome is not LoginOutcome.OK or result.address_id is None:
            return LoginResult(outcome, locked_until=result.locked_until)
        try:
            contract_id = await asyncio.to_thread(self._contract_of, result.address_id)
        except SQLAlchemyError:
            return LoginResult(LoginOutcome.UNAVAILABLE)
        if contract_id is None:  # deleted between the check and now
            return LoginResult(LoginOutcome.BAD_CREDENTIALS)
        return LoginResult(LoginOutcome.OK, contract_id=contract_id,
                           address_id=result.address_id)

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
    """Set a new random contract password and sign every contract-level portal session
    out; return the password, to be shown once (like a reissued POP password, SPEC §1).
    Blocking; the caller audits and commits."""
    password = generate_password(length)
    web_sessions_repo.set_contract_password(session, contract_id=contract_id,
                                            password_hash=hashing.hash(password), now=now)
    web_sessions_repo.end_all_for_contract(session, contract_id=contract_id)
    return password
