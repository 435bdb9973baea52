"""Audit log (SPEC §9): who changed what, when.  Callers never pass secrets in ``detail``."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from mailplane.storage.models import AuditRecord

#: Built once: every write through the API adds one audit row.
_INSERT_RECORD = insert(cast(Table, AuditRecord.__table__))


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    now: datetime,
    contract_id: int | None = None,
    address: str | None = None,
    detail: dict[str, object] | None = None,
) -> None:
    """One Core INSERT in the caller's transaction (no ORM unit of work: every API write
    pays for it, docs/performance.md)."""
    session.execute(_INSERT_RECORD, {
        "at": now, "actor": actor, "contract_id": contract_id, "address": address,
        "action": action, "detail": detail or {},
    })


def list_for_contract(
    session: Session, *, contract_id: int, limit: int, offset: int, address: str | None = None
) -> Sequence[AuditRecord]:
    query = select(AuditRecord).where(AuditRecord.contract_id == contract_id)
    if address is not None:
        query = query.where(AuditRecord.address == address)
    query = query.order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
    return session.scalars(query.limit(limit).offset(offset)).all()


class Logged(NamedTuple):
    """One audit row as a reader of changes sees it (no detail, no actor)."""

    id: int
    action: str
    contract_id: int | None
    address: str | None


def latest_id(session: Session) -> int:
    """The newest row's id (0 for an empty log): an index read."""
    return int(session.scalar(select(func.max(AuditRecord.id))) or 0)


def logged_after(session: Session, *, after_id: int,
                 actions: Collection[str]) -> list[Logged]:
    """The rows after ``after_id`` whose action is one of ``actions``, oldest first (a
    range of the primary key: a reader keeps ``after_id`` close to the newest row)."""
    rows = session.execute(
        select(AuditRecord.id, AuditRecord.action, AuditRecord.contract_id,
               AuditRecord.address)
        .where(AuditRecord.id > after_id, AuditRecord.action.in_(sorted(actions)))
        .order_by(AuditRecord.id)).all()
    return [Logged(int(row[0]), str(row[1]), row[2], row[3]) for row in rows]
