"""Sender Rewriting Scheme (SPEC §5: bounces from a forward destination reach the original
sender while SPF still passes downstream).

Follows Shevek's SRS paper as implemented by libsrs2 / postsrsd, so addresses interoperate:

- ``SRS0=HHHHHHHHHH=TT=orig-domain=orig-local@srs-domain`` — ``TT`` is the day number mod
  1024 in base32, ``HHHHHHHHHH`` the first :data:`HASH_LENGTH` base32 characters of
  HMAC-SHA256(secret, TT + domain + local), each argument lower-cased before hashing, so the
  hash survives MTAs that change case.
- ``SRS1=HHHH=first-srs-domain==HHHH=TT=orig-domain=orig-local@srs-domain`` — forwarding an
  address that is already SRS0 keeps the first forwarder's part and names its domain, so a
  bounce goes straight back to the first forwarder (no growing address).
- Hashes are compared case-insensitively, as the scheme intends (libsrs2
  ``srs_hash_check``: some MTAs change the case of a local part).  libsrs2's default is 4
  base64 characters, which compared ignoring case leave about 2 million values — a forged
  address took minutes to guess (issue 20).  Base32 is case-insensitive by construction,
  so 10 characters keep all their 50 bits: guessing is hopeless.  Timestamps older than
  ``max_age_days`` are refused.  The null sender is never rewritten (a bounce has no sender).
- Addresses in the old 4-character form are no longer accepted: mailplane recorded none
  of them as emitted (``srs_forwards``, :mod:`mailplane.storage.srs_forward_repo`), so a
  bounce to one could not be told from a relay attempt (docs/security.md).

Only the shape matters to other systems (a forwarder after us keeps our ``SRS0`` tail in
its ``SRS1``); nobody but us checks our hash, so its length and alphabet are ours to choose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from mailplane.clock import Clock
from mailplane.config.settings import Settings

#: Base32 characters of the hash: 50 bits (issue 20: 4 base64 characters compared ignoring
#: case were about 2 M values).
HASH_LENGTH = 10
TIME_SLOTS = 1024  # two base32 characters
#: RFC 5321 §4.5.3.1.3: a path holds at most 254 octets between its brackets; a longer
#: envelope sender would be refused by the destination (and overflow our columns).
MAX_ADDRESS_OCTETS = 254
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SEPARATORS = "=+-"


class SrsError(ValueError):
    """An address that is not a valid, unexpired SRS address of ours."""


class Srs:
    def __init__(
        self,
        *,
        secret: str,
        domain: str,
        max_age_days: int = 21,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not secret:
            raise ValueError("SRS needs a secret (config key srs.secret)")
        if not domain:
            raise ValueError("SRS needs a domain (config key srs.domain)")
        self._secret = secret.encode("utf-8")
        self.domain = domain.lower()
        self.max_age_days = max_age_days
        self._now = now

    # --- public -------------------------------------------------------------------------

    def forward(self, sender: str) -> str:
        """The envelope sender to use when forwarding mail from ``sender``;
        :class:`SrsError` when the rewritten address would be longer than a path may be."""
        rewritten = self._forward(sender)
        if len(rewritten.encode("utf-8")) > MAX_ADDRESS_OCTETS:
            raise SrsError("the SRS address would be longer than RFC 5321 allows")
        return rewritten

    def _forward(self, sender: str) -> str:
        if not sender or sender == "<>":
            return ""
        local, at, host = sender.rpartition("@")
        if not at or not local:
            raise SrsError("sender has no domain")
        if host.lower() == self.domain:
            return sender  # already ours (libsrs2 without alwaysrewrite)
        tag = local[:4].upper()
        if tag == "SRS0" and len(local) > 4 and local[4] in _SEPARATORS:
            # SRS1 keeps the first forwarder's host and the SRS0 tail (with its separator).
            tail = "=" + local[5:]
            return self._srs1(host, tail)
        if tag == "SRS1" and len(local) > 4 and local[4] in _SEPARATORS:
            parts = local[5:].split("=", 2)
            if len(parts) < 3:
                raise SrsError("malformed SRS1 address")
            _hash, first_host, tail = parts  # tail keeps its leading separator
            return self._srs1(first_host, tail)
        stamp = self._timestamp()
        digest = self._hash(stamp, host, local)
        return f"SRS0={digest}={stamp}={host}={local}@{self.domain}"

    def reverse(self, address: str) -> str:
        """The address a bounce to ``address`` must go to; :class:`SrsError` if invalid."""
        local, at, host = address.rpartition("@")
        if not at or host.lower() != self.domain:
            raise SrsError("not an address of the SRS domain")
        tag = local[:4].upper()
        if len(local) < 6 or local[4] not in _SEPARATORS:
            raise SrsError("not an SRS address")
        body = local[5:]
        if tag == "SRS0":
            parts = body.split("=", 3)
            if len(parts) != 4 or not all(parts):
                raise SrsError("malformed SRS0 address")
            digest, stamp, orig_host, orig_local = parts
            self._check_hash(digest, stamp, orig_host, orig_local)
            self._check_timestamp(stamp)
            return f"{orig_local}@{orig_host}"
        if tag == "SRS1":
            parts = body.split("=", 2)
            if len(parts) != 3 or not parts[0] or not parts[1]:
                raise SrsError("malformed SRS1 address")
            digest, first_host, tail = parts  # tail keeps its leading separator
            self._check_hash(digest, first_host, tail)
            return f"SRS0{tail}@{first_host}"
        raise SrsError("not an SRS address")

    def is_srs_address(self, address: str) -> bool:
        local, _, host = address.rpartition("@")
        return host.lower() == self.domain and local[:4].upper() in ("SRS0", "SRS1")

    # --- internals ----------------------------------------------------------------------

    def _srs1(self, first_host: str, tail: str) -> str:
        digest = self._hash(first_host, tail)
        return f"SRS1={digest}={first_host}={tail}@{self.domain}"

    def _hash(self, *parts: str) -> str:
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part.lower().encode("utf-8"))
            mac.update(b"\0")  # "ab"+"c" and "a"+"bc" hash differently
        return base64.b32encode(mac.digest()).decode("ascii")[:HASH_LENGTH]

    def _check_hash(self, digest: str, *parts: str) -> None:
        expected = self._hash(*parts)
        # Case-insensitive like libsrs2 (some MTAs lower-case the local part); base32 loses
        # nothing by it.  A hash of another length (the old 4-character form) never matches.
        if not hmac.compare_digest(digest.upper().encode("utf-8", "replace"),
                                   expected.encode()):
            raise SrsError("SRS hash does not match")

    def _day(self) -> int:
        return int(self._now().timestamp() // 86400)

    def _timestamp(self) -> str:
        day = self._day() % TIME_SLOTS
        return _BASE32[day >> 5] + _BASE32[day & 31]

    def _check_timestamp(self, stamp: str) -> None:
        stamp = stamp.upper()
        if len(stamp) != 2 or any(c not in _BASE32 for c in stamp):
            raise SrsError("malformed SRS timestamp")
        then = (_BASE32.index(stamp[0]) << 5) | _BASE32.index(stamp[1])
        now = self._day() % TIME_SLOTS
        while now < then:
            now += TIME_SLOTS
        if now > then + self.max_age_days:
            raise SrsError("SRS address expired")


def node_secret(settings: Settings) -> str:
    """``srs.secret``, or a secret generated once into ``<state_dir>/srs.secret`` (mode 600).

    A single node (``make run``) then works out of the box and keeps its secret across
    restarts; several nodes must share one configured secret, or a bounce that arrives at
    another node could not be verified.
    """
    configured = settings.srs.secret.get_secret_value()
    if configured:
        return configured
    path = settings.state_dir / "srs.secret"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race
            return path.read_text(encoding="utf-8").strip()
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return secret


def srs_from_settings(settings: Settings, clock: Clock) -> Srs:
    """The node's SRS from ``[srs]`` (domain defaults to the MX host name)."""
    return Srs(
        secret=node_secret(settings),
        domain=settings.srs.domain or settings.mx.hostname,
        max_age_days=settings.srs.max_age_days,
        now=clock.now,
    )
