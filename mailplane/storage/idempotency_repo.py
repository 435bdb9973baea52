"""Stored first responses for ``Idempotency-Key`` requests (SPEC §1: double clicks)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailplane.storage.models import IdempotencyRecord


def get(session: Session, *, scope: str, key: str) -> IdempotencyRecord | None:
    return session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    )


def save(
    session: Session,
    *,
    scope: str,
    key: str,
    request_hash: str,
    status_code: int,
    response_body: bytes,
    now: datetime,
) -> None:
    session.add(
        IdempotencyRecord(
            scope=scope,
            key=key,
            request_hash=request_hash,
            status_code=status_code,
            response_body=response_body,
            created_at=now,
        )
    )
