"""The one credential check for POP3 and SMTP submission (SPEC §1: the same POP account and
POP password log in to both).

The username is the POP account (``m1234567``) or the full address (case-insensitive).  The
hash is read from the database at each login — in a thread, like the argon2 verification —
so a password change or a suspension takes effect at once on every node.

Every attempt goes through the :class:`~mailplane.auth.login_guard.LoginGuard`: counted
before the password is checked, refused unchecked when its client or IP is over its budget
(or when the account is locked and this client has failed it too), and answered "wrong"
unchecked when the client already failed with this very password (a mail program with an
old password, polling).  User names are read as people type them: full-width letters and
digits are the ASCII ones (NFKC, :func:`login_name`), so ``ｔａｒｏ＠…`` is no failure.

Unknown users cost the same as known ones: the password is verified against a dummy hash and
the same failure is returned, so neither the reply nor its timing tells whether an account
exists.  A suspended address (or one under a suspended contract, 003 Art.20(3)) is refused
only after the right password, which reveals nothing to someone who does not know it.

Every failure is counted (``mailplane_login_failures_total``) and logged within a budget
per listener (:mod:`mailplane.auth.failed_logins`): guessing from many addresses cannot
grow the log without bound.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.auth.failed_logins import FailedLogins
from mailplane.auth.login_guard import MAIL, Budget, LoginGuard
from mailplane.auth.passwords import PasswordHashing
from mailplane.storage import credentials_repo
from mailplane.storage.credentials_repo import Credential

log = logging.getLogger(__name__)
_failed = FailedLogins(log)

#: Longest username worth a database lookup (an address is at most 320 octets).
MAX_USERNAME_LENGTH = 320
#: Control characters never appear in a POP account or an address; PostgreSQL refuses a
#: NUL in text outright, so they must not reach a query or a counter key as typed.
_CONTROLS = {code: "?" for code in (*range(0x20), 0x7F)}


def login_name(typed: str) -> str:
    """A user name or customer number as the person meant it: NFKC turns full-width
    letters, digits, ``＠`` and ``．`` (an IME left on) into ASCII, and surrounding spaces
    go.  Every name mailplane issues is ASCII, so no two accounts can meet here."""
    return unicodedata.normalize("NFKC", typed).strip()


class AuthOutcome(Enum):
    OK = "ok"
    #: Wrong password or unknown user — deliberately one outcome.
    BAD_CREDENTIALS = "bad_credentials"
    #: Right password, but the address or its contract is suspended.
    SUSPENDED = "suspended"
    #: Too many failures for this IP or account; try again after ``locked_until``.
    LOCKED = "locked"
    #: The credential store could not be read; the client should retry later.
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: AuthOutcome
    address: str | None = None
    address_id: int | None = None
    pop_account: str | None = None
    locked_until: datetime | None = None
    #: The stored hash the password was verified against (a portal session is stamped
    #: with it: :func:`mailplane.auth.portal_login.credential_stamp`).
    password_hash: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK


class Authenticator:
    """Verifies a username/password pair under the login guard."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        hashing: PasswordHashing,
        guard: LoginGuard,
        *,
        budget: Budget = MAIL,
    ) -> None:
        self._session_factory = session_factory
        self._hashing = hashing
        self._guard = guard
        self._budget = budget

    async def authenticate(
        self, username: str, password: str, *, peer_ip: str, listener: str
    ) -> AuthResult:
        """Check one login attempt; failures are delayed by the guard before returning."""
        username = login_name(username)
        try:
            credential = await asyncio.to_thread(self._lookup, username)
        except SQLAlchemyError as exc:
            _failed.unavailable(listener, "%s login: credential store unavailable: %s", listener,
                                type(exc).__name__)
            return AuthResult(AuthOutcome.UNAVAILABLE)
        # Unknown users are counted under the name they gave, known ones under their POP
        # account whichever name they used: both lock the same way, so locking leaks nothing.
        account = credential.pop_account if credential else (
            username[:MAX_USERNAME_LENGTH].translate(_CONTROLS))
        hashed = credential.password_hash if credential else None
        digest = self._guard.password_digest(account=account, stored_hash=hashed,
                                             password=password)
        try:
            attempt = await self._guard.begin(peer_ip=peer_ip, account=account, digest=digest,
                                              budget=self._budget)
        except SQLAlchemyError as exc:
            _failed.unavailable(listener, "%s login: guard unavailable: %s", listener,
                                type(exc).__name__)
            return AuthResult(AuthOutcome.UNAVAILABLE)
        if attempt.repeated:
            _failed.record(listener, "same_password", "%s login failed again with the same "
                           "password: peer %s", listener, peer_ip)
            await self._guard.refused(attempt)
            return AuthResult(AuthOutcome.BAD_CREDENTIALS)
        if not attempt.allowed:
            _failed.record(listener, "locked", "%s login refused while locked: peer %s",
                           listener, peer_ip)
            metrics.LIMIT_REFUSALS.labels(listener, attempt.refusal or "login").inc()
            await self._guard.refused(attempt)
            return AuthResult(AuthOutcome.LOCKED, locked_until=attempt.locked_until)

        try:
            try:
                matches = await asyncio.to_thread(self._hashing.verify_or_spend, hashed, password)
            except asyncio.CancelledError:
                # The client left before the answer: the attempt still counts as a failure
                # (leaving early must not be a way to guess without being counted).
                await asyncio.shield(self._guard.failed(attempt, delay=False))
                raise
            if not matches or credential is None:
                _failed.record(listener, "wrong_password", "%s login failed: peer %s",
                               listener, peer_ip)
                await self._guard.failed(attempt)
                return AuthResult(AuthOutcome.BAD_CREDENTIALS)
            await self._guard.succeeded(attempt)
        except SQLAlchemyError as exc:
            _failed.unavailable(listener, "%s login: guard unavailable: %s", listener,
                                type(exc).__name__)
            return AuthResult(AuthOutcome.UNAVAILABLE)
        outcome = AuthOutcome.OK if credential.active else AuthOutcome.SUSPENDED
        log.info("%s login %s: %s from %s", listener, outcome.value, credential.pop_account,
                 peer_ip)
        return AuthResult(
            outcome,
            address=credential.address,
            address_id=credential.address_id,
            pop_account=credential.pop_account,
            password_hash=credential.password_hash,
        )

    def _lookup(self, username: str) -> Credential | None:
        if not username or len(username) > MAX_USERNAME_LENGTH or \
                username.translate(_CONTROLS) != username:
            return None
        with self._session_factory() as session:
            return credentials_repo.find(session, username=username)
