"""Audit log (SPEC §9): who changed what, when.  Callers never pass secrets in ``detail``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert, select
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
