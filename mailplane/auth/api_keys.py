"""Management API keys (SPEC §10): ``mpk_<key_id>_<secret>``, who a key speaks for, and
how a key is issued and verified.

The key id finds the row; the secret is checked against its stored hash.  The secret is
returned once at issue and never stored; successful checks are cached for a short time
by SHA-256 of the whole key.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailplane.auth.passwords import PasswordHashing
from mailplane.storage import api_keys_repo, audit_repo

ROLES = ("operator", "portal", "customer")
KEY_PREFIX = "mpk_"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: str
    contract_id: int | None = None
    address_id: int | None = None

    @property
    def actor(self) -> str:
        """What the audit log records: role and key id, never the secret."""
        return f"{self.role}:{self.key_id}"

    @property
    def is_staff(self) -> bool:
        """Operators and the portal service may act for any contract."""
        return self.role in ("operator", "portal")


def new_key_material() -> tuple[str, str, str]:
    """(key_id, secret, full key shown once)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"


def split_key(token: str) -> tuple[str, str] | None:
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


class KeyVerifier:
    """Verifies bearer keys against the database, with a small TTL cache."""

    def __init__(self, hashing: PasswordHashing, cache_seconds: int) -> None:
        self._hashing = hashing
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The principal of a key verified less than ``cache_seconds`` ago (no I/O)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        return None

    def verify(self, session: Session, token: str) -> Principal | None:
        """Blocking (a query and argon2): run in a thread."""
        found = self.cached(token)
        if found is not None:
            return found
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        parts = split_key(token)
        if parts is None:
            return None
        key_id, secret = parts
        row = api_keys_repo.get_active_key(session, key_id=key_id)
        if row is None or not self._hashing.verify(row.secret_hash, secret):
            return None
        principal = Principal(
            key_id=row.key_id,
            role=row.role,
            contract_id=row.contract_id,
            address_id=row.address_id,
        )
        if self._cache_seconds:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now + self._cache_seconds, principal)
        return principal


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
