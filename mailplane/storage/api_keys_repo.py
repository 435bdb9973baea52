"""API keys: only the argon2id hash of the secret is stored (SPEC §10, non-negotiable 6)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailplane.storage.models import ApiKey


def create_api_key(
    session: Session,
    *,
    key_id: str,
    secret_hash: str,
    role: str,
    now: datetime,
    contract_id: int | None = None,
    address_id: int | None = None,
    label: str = "",
) -> ApiKey:
    row = ApiKey(
        key_id=key_id,
        secret_hash=secret_hash,
        role=role,
        contract_id=contract_id,
        address_id=address_id,
        label=label,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def get_active_key(session: Session, *, key_id: str) -> ApiKey | None:
    return session.scalar(
        select(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
    )
