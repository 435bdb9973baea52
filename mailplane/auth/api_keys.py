"""Management API keys (SPEC §10): ``mpk_<key_id>_<secret>``, who a key speaks for, and
how a key is issued and verified.

The key id finds the row; the secret — 256 random bits, shown once at issue — is checked
against a keyed SHA-256 digest of it.  A fast hash is as strong as argon2 here: argon2's
cost protects guessable passwords, and nobody guesses 256 random bits; while argon2 on
every wrong key let an unauthenticated flood occupy the CPU and the database pool (issue
15).  A wrong secret now costs one indexed query and one HMAC, and an unknown key id costs
exactly the same (it is compared against a dummy digest), so timing reveals nothing.

Keys issued before migration 0005 have only an argon2 hash: they are checked with argon2
(through the caller's :class:`PasswordHashing`, which the API bounds: ``api/hashing.py``),
and their first successful use stores the digest and drops the hash.

Nothing is cached: every request reads the key row, so a key revoked or deleted with its
address or contract stops working at once on every node.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailplane.auth.passwords import PasswordHashing
from mailplane.metrics import API_KEY_CHECKS
from mailplane.storage import api_keys_repo, audit_repo
from mailplane.storage.api_keys_repo import StoredKey

ROLES = ("operator", "portal", "customer")
KEY_PREFIX = "mpk_"
#: Domain separation: this digest is never comparable with any other SHA-256 use.
_DIGEST_LABEL = b"mailplane api key v1\x00"
#: Longer ids or secrets are never issued; refusing them bounds the work per request.
_MAX_KEY_ID = 32
_MAX_SECRET = 128


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
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"


def split_key(token: str) -> tuple[str, str] | None:
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    if len(key_id) > _MAX_KEY_ID or len(secret) > _MAX_SECRET:
        return None
    return key_id, secret


def key_digest(key_id: str, secret: str) -> str:
    """Keyed SHA-256 of a key secret, bound to its key id (a digest copied onto another
    key's row does not verify there)."""
    return hmac.new(_DIGEST_LABEL + key_id.encode(), secret.encode(), hashlib.sha256
                    ).hexdigest()


#: What an unknown key id is compared against, so that it costs what a known one costs.
_NO_DIGEST = key_digest("\x00", "")


class KeyVerifier:
    """Verifies bearer keys against the database (blocking: run in a thread)."""

    def __init__(self, hashing: PasswordHashing) -> None:
        self._hashing = hashing

    def verify(self, session: Session, token: str) -> Principal | None:
        """The principal of ``token``, or None."""
        parts = split_key(token)
        if parts is None:
            API_KEY_CHECKS.labels("malformed", "rejected").inc()
            return None
        key_id, secret = parts
        row = api_keys_repo.get_active_key(session, key_id=key_id)
        offered = key_digest(key_id, secret)
        if row is not None and row.secret_digest is None and row.secret_hash:
            return self._verify_argon2(session, row, secret, offered)
        stored = row.secret_digest if row is not None and row.secret_digest else _NO_DIGEST
        if not hmac.compare_digest(offered, stored) or row is None:
            API_KEY_CHECKS.labels("digest", "rejected").inc()
            return None
        API_KEY_CHECKS.labels("digest", "ok").inc()
        return _principal(row)

    def _verify_argon2(self, session: Session, row: StoredKey, secret: str,
                       offered: str) -> Principal | None:
        """A pre-0005 key: argon2 (bounded), then move it to the digest."""
        assert row.secret_hash is not None
        if not self._hashing.verify(row.secret_hash, secret):
            API_KEY_CHECKS.labels("argon2", "rejected").inc()
            return None
        API_KEY_CHECKS.labels("argon2", "ok").inc()
        api_keys_repo.store_digest(session, key_id=row.key_id, secret_digest=offered)
        session.commit()
        return _principal(row)


def _principal(row: StoredKey) -> Principal:
    return Principal(key_id=row.key_id, role=row.role, contract_id=row.contract_id,
                     address_id=row.address_id)


def issue_api_key(
    session: Session,
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
        secret_digest=key_digest(key_id, secret),
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
