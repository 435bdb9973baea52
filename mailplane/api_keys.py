"""Issuing API keys outside HTTP (CLI ``create-api-key``, ``seed-demo``, test fixtures).

The secret is returned once and only its argon2id hash is stored (SPEC §10).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mailplane.api.principal import new_key_material
from mailplane.passwords import PasswordHashing
from mailplane.storage import api_keys_repo, audit_repo


def issue_api_key(
    session: Session,
    hashing: PasswordHashing,
    *,
    role: str,
    now: datetime,
    actor: str = "cli",
    contract_id: int | None = None,
    address_id: int | None = None,
    label: str = "",
) -> tuple[str, str]:
    """Create a key row; return (key id, full key shown once).  The caller commits."""
    key_id, secret, full_key = new_key_material()
    api_keys_repo.create_api_key(
        session,
        key_id=key_id,
        secret_hash=hashing.hash(secret),
        role=role,
        contract_id=contract_id,
        address_id=address_id,
        label=label,
        now=now,
    )
    audit_repo.record(
        session,
        actor=actor,
        action="api_key.create",
        now=now,
        contract_id=contract_id,
        detail={"key_id": key_id, "role": role},
    )
    return key_id, full_key
