"""API keys: the secret is never stored, only its keyed digest (``auth/api_keys.py``) — or,
for a key issued before migration 0005 and not used since, its argon2id hash (SPEC §10,
non-negotiable 6)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from mailplane.storage.models import ApiKey


def create_api_key(
    session: Session,
    *,
    key_id: str,
    role: str,
    now: datetime,
    secret_digest: str | None = None,
    secret_hash: str | None = None,
    contract_id: int | None = None,
    address_id: int | None = None,
    label: str = "",
) -> ApiKey:
    row = ApiKey(
        key_id=key_id,
        secret_digest=secret_digest,
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


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What checking one key needs (read without an ORM entity: every request runs it)."""

    key_id: str
    role: str
    contract_id: int | None
    address_id: int | None
    secret_digest: str | None
    secret_hash: str | None


_K = cast(Table, ApiKey.__table__)
#: Built once.  A key whose row is gone (its address or contract deleted: ON DELETE
#: CASCADE) or revoked is not found, on every node at once: nothing is cached.
_ACTIVE_KEY = select(_K.c.key_id, _K.c.role, _K.c.contract_id, _K.c.address_id,
                     _K.c.secret_digest, _K.c.secret_hash).where(
    _K.c.key_id == bindparam("key_id"), _K.c.revoked_at.is_(None))


def get_active_key(session: Session, *, key_id: str) -> StoredKey | None:
    row = session.execute(_ACTIVE_KEY, {"key_id": key_id}).first()
    return None if row is None else StoredKey(*row)


def store_digest(session: Session, *, key_id: str, secret_digest: str) -> None:
    """Move a pre-0005 key to the digest (its argon2 hash is no longer needed)."""
    session.execute(update(_K).where(_K.c.key_id == key_id, _K.c.secret_digest.is_(None))
                    .values(secret_digest=secret_digest, secret_hash=None))


def revoke(session: Session, *, key_id: str, now: datetime) -> bool:
    """Revoke an active key; False if there is none by that id."""
    result = session.execute(update(_K).where(_K.c.key_id == key_id, _K.c.revoked_at.is_(None))
                             .values(revoked_at=now))
    return bool(getattr(result, "rowcount", 0))


def revoke_for_contract(session: Session, *, contract_id: int, now: datetime) -> int:
    """Revoke every key bound to a contract (解約: its keys log in to nothing)."""
    result = session.execute(update(_K).where(_K.c.contract_id == contract_id,
                                              _K.c.revoked_at.is_(None)).values(revoked_at=now))
    return int(getattr(result, "rowcount", 0) or 0)
