"""Stored first responses for ``Idempotency-Key`` requests (SPEC §1: double clicks).

``response_body`` is sealed by the API (``api/idempotency.py``): it holds an initial
password.  Records live ``api.idempotency_hours``; the periodic purge deletes older ones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
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


def forget(session: Session, *, scope: str, key: str) -> None:
    """Delete the record of (``scope``, ``key``) if any (an expired one, before the key
    starts a new request)."""
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.scope == scope,
                                                    IdempotencyRecord.key == key))


def purge_created_before(session: Session, *, cutoff: datetime) -> int:
    """Delete every record older than ``cutoff``; the caller commits."""
    result = session.execute(delete(IdempotencyRecord)
                             .where(IdempotencyRecord.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
