"""Audit log (SPEC §9): who changed what, when.  Callers never pass secrets in ``detail``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailplane.storage.models import AuditRecord


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    now: datetime,
    contract_id: int | None = None,
    address: str | None = None,
    detail: dict[str, object] | None = None,
) -> AuditRecord:
    row = AuditRecord(
        at=now,
        actor=actor,
        contract_id=contract_id,
        address=address,
        action=action,
        detail=detail or {},
    )
    session.add(row)
    return row


def list_for_contract(
    session: Session, *, contract_id: int, limit: int, offset: int, address: str | None = None
) -> Sequence[AuditRecord]:
    query = select(AuditRecord).where(AuditRecord.contract_id == contract_id)
    if address is not None:
        query = query.where(AuditRecord.address == address)
    query = query.order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
    return session.scalars(query.limit(limit).offset(offset)).all()
