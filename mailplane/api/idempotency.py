"""``Idempotency-Key`` replays (SPEC §1: the manual warns that double clicks register an
address twice; issue 14).

A repeated key returns the first response — the initial password included — for
``api.idempotency_hours``.  The stored response is sealed with AES-GCM under a key derived
from ``api.replay_secret`` (or a secret generated once into ``<state_dir>``, mode 600), bound
to its scope, key and request, so the database alone never shows a password, and a row
copied to another key does not open.  A record this node cannot open (several nodes that do
not share the secret) answers 409, never 500; replays are never logged.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

from mailplane.api.errors import ApiError
from mailplane.clock import as_utc
from mailplane.config.settings import Settings
from mailplane.storage import idempotency_repo
from mailplane.storage.state_dir import secret_file

_FORMAT = b"\x01"
_NONCE_BYTES = 12


def replay_secret(settings: Settings) -> str:
    """``api.replay_secret``, or one generated into ``<state_dir>/api-replay.secret``."""
    configured = settings.api.replay_secret.get_secret_value()
    return configured or secret_file(settings.state_dir / "api-replay.secret")


def request_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class Replay:
    status_code: int
    body: bytes


class ReplayStore:
    """Seal, save and find first responses (blocking: called from sync routes)."""

    def __init__(self, secret: str, lifetime: timedelta) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"mailplane idempotency replay v1").derive(secret.encode())
        self._aead = AESGCM(key)
        self.lifetime = lifetime

    def find(self, session: Session, *, scope: str, key: str, request_hash: str,
             now: datetime) -> Replay | None:
        """The first response to (``scope``, ``key``), if it is still alive.

        422 if the key was used for another request; 409 if the record cannot be opened
        here.  An expired record counts as none (:meth:`save` replaces it).  Read only.
        """
        record = idempotency_repo.get(session, scope=scope, key=key)
        if record is None or as_utc(record.created_at) <= now - self.lifetime:
            return None
        if record.request_hash != request_hash:
            raise ApiError(422, "idempotency_mismatch",
                           "Idempotency-Key was already used for a different request",
                           "Idempotency-Key")
        body = self._open(record.response_body, _context(scope, key, request_hash))
        if body is None:
            raise ApiError(409, "idempotency_unreadable",
                           "this request was already carried out, but its result cannot be"
                           " shown again", "Idempotency-Key")
        return Replay(record.status_code, body)

    def save(self, session: Session, *, scope: str, key: str, request_hash: str,
             status_code: int, body: bytes, now: datetime) -> None:
        """Stage the sealed response in the caller's transaction, replacing an expired
        record of the key (the caller holds the lock its :meth:`find` ran under)."""
        idempotency_repo.forget(session, scope=scope, key=key)
        idempotency_repo.save(session, scope=scope, key=key, request_hash=request_hash,
                              status_code=status_code, now=now,
                              response_body=self._seal(body,
                                                       _context(scope, key, request_hash)))

    def _seal(self, body: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT + nonce + self._aead.encrypt(nonce, body, context)

    def _open(self, sealed: bytes, context: bytes) -> bytes | None:
        if not sealed.startswith(_FORMAT) or len(sealed) < 1 + _NONCE_BYTES:
            return None
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[1 + _NONCE_BYTES :], context)
        except InvalidTag:
            return None


def _context(scope: str, key: str, request_hash: str) -> bytes:
    return "\x00".join((scope, key, request_hash)).encode()
