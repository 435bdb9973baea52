"""Issuing and checking the one-time codes of account changes (SPEC §9a) for the routes:
:mod:`mailplane.auth.account_codes` makes and digests them, ``account_codes_repo`` keeps
the digests; here are the rules a code lives by — ``account.code_minutes``, at most
``account.code_max_attempts`` tries (a wrong try is counted at once, in its own commit),
one use (:func:`use`: a conditional update, exactly one winner under any concurrency)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from mailplane.auth.account_codes import code_digest, matches, new_code
from mailplane.config.settings import Settings
from mailplane.rules.account import normalise_code
from mailplane.storage import account_codes_repo
from mailplane.storage.account_codes_repo import LiveCode


@dataclass(frozen=True, slots=True)
class Issued:
    code: str
    expires_at: datetime


class Codes:
    def __init__(self, settings: Settings, key: bytes) -> None:
        self._key = key
        self._lifetime = timedelta(minutes=settings.account.code_minutes)
        self._max_attempts = settings.account.code_max_attempts

    def issue(self, session: Session, *, contract_id: int, purpose: str, digits: int,
              now: datetime, new_value: str | None = None) -> Issued:
        """A new code (older ones of the purpose are void); the caller mails it and
        commits."""
        code = new_code(digits)
        expires_at = now + self._lifetime
        account_codes_repo.issue(
            session, contract_id=contract_id, purpose=purpose, new_value=new_value,
            code_digest=code_digest(self._key, purpose=purpose, contract_id=contract_id,
                                    code=code),
            now=now, expires_at=expires_at)
        return Issued(code, expires_at)

    def check(self, session: Session, *, contract_id: int, purpose: str, typed: str,
              now: datetime) -> LiveCode | None:
        """The live code if ``typed`` is it; a wrong try is counted (and committed)."""
        live = account_codes_repo.live(session, contract_id=contract_id, purpose=purpose,
                                       now=now, max_attempts=self._max_attempts)
        if live is None:
            return None
        code = normalise_code(typed)
        if code and matches(self._key, live.code_digest, purpose=purpose,
                            contract_id=contract_id, code=code):
            return live
        account_codes_repo.add_attempt(session, code_id=live.id)
        session.commit()
        return None

    def use(self, session: Session, live: LiveCode, now: datetime) -> bool:
        """Spend the code in the caller's transaction: True for exactly one caller."""
        return account_codes_repo.claim(session, code_id=live.id, now=now,
                                        max_attempts=self._max_attempts)
