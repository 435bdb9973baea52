"""One-time account codes (``account_codes``; SPEC §9a).  Functions take an open session
and do not commit: the caller owns the transaction.

Use is one conditional UPDATE (``used_at IS NULL`` and attempts left): of any number of
concurrent requests with the right code exactly one gets the row, on SQLite and PostgreSQL
alike; a wrong code adds an attempt the same way, so parallel guesses are all counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import AccountCode

_T = cast(Table, AccountCode.__table__)


@dataclass(frozen=True, slots=True)
class LiveCode:
    id: int
    contract_id: int
    code_digest: str
    new_value: str | None
    expires_at: datetime
    attempts: int


def issue(session: Session, *, contract_id: int, purpose: str, code_digest: str,
          new_value: str | None, now: datetime, expires_at: datetime) -> None:
    """Store a new code; every older unused code of the same purpose is void from now."""
    session.execute(update(_T).where(_T.c.contract_id == contract_id, _T.c.purpose == purpose,
                                     _T.c.used_at.is_(None)).values(used_at=now))
    session.execute(_T.insert().values(
        contract_id=contract_id, purpose=purpose, code_digest=code_digest, new_value=new_value,
        created_at=now, expires_at=expires_at, attempts=0, used_at=None))


def live(session: Session, *, contract_id: int, purpose: str, now: datetime,
         max_attempts: int) -> LiveCode | None:
    """The one code of ``purpose`` that may still be used, if any."""
    row = session.execute(
        select(_T.c.id, _T.c.contract_id, _T.c.code_digest, _T.c.new_value, _T.c.expires_at,
               _T.c.attempts)
        .where(_T.c.contract_id == contract_id, _T.c.purpose == purpose,
               _T.c.used_at.is_(None), _T.c.expires_at > now,
               _T.c.attempts < max_attempts)
        .order_by(_T.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    id_, contract, digest, new_value, expires_at, attempts = row._tuple()
    return LiveCode(id_, contract, digest, new_value, as_utc(expires_at), attempts)


def add_attempt(session: Session, *, code_id: int) -> None:
    session.execute(update(_T).where(_T.c.id == code_id, _T.c.used_at.is_(None))
                    .values(attempts=_T.c.attempts + 1))


def claim(session: Session, *, code_id: int, now: datetime, max_attempts: int) -> bool:
    """Use the code: True for exactly one caller, and only while it is still live."""
    result = session.execute(
        update(_T).where(_T.c.id == code_id, _T.c.used_at.is_(None), _T.c.expires_at > now,
                         _T.c.attempts < max_attempts)
        .values(used_at=now))
    return bool(getattr(result, "rowcount", 0))


def purge_before(session: Session, *, cutoff: datetime) -> int:
    """Codes that expired before ``cutoff`` (nothing needs them any more)."""
    result = session.execute(delete(_T).where(_T.c.expires_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def delete_for_contract(session: Session, *, contract_id: int) -> None:
    session.execute(delete(_T).where(_T.c.contract_id == contract_id))
