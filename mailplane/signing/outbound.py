"""The one call the outbound worker makes before it sends a message to a remote host
(SPEC §8b): :meth:`OutboundSigner.sign` returns the bytes to send — the same message with
our stamps on top — and does its CPU work in a thread, off the event loop.

Stamps, top to bottom of the result: our DKIM signatures (RSA-2048 above Ed25519: a
verifier that knows only RSA and reads only the first signature still finds one it can
check; RFC 8463 §5 asks for both while Ed25519 spreads), then the ARC set when
``[dkim] arc_seal_forwards`` is on and the message is a forward, then the message as it
was — a forwarded message keeps its original signatures untouched.  Which selectors sign
is read from the database every ``[dkim] refresh_seconds`` (so every node follows an
activation), their keys from ``keys_dir``.

Failures: with no active selector the mail leaves unsigned (a fresh install before
``mailplane dkim generate``; one warning a minute).  An active selector whose key this node
cannot use (missing file, wrong key) defers the message with ``on_error = "tempfail"``
(:class:`SigningUnavailable`: the worker retries it, as Postfix does when its signing
milter fails), or sends it without that signature with ``"unsigned"``.  A message dkimpy
cannot parse leaves unsigned, with a log line: no message is held back for its form.

Mail the worker delivers to hosted addresses is not signed: it never leaves the platform.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import dkim
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.config.settings import Settings
from mailplane.net.throttled_log import ThrottledLog
from mailplane.signing.dkim_signature import body_hash, parse, signature_header
from mailplane.signing.keys import (
    Algorithm,
    KeyFileError,
    SigningKey,
    check_algorithm,
    key_path,
    load_signing_key,
)
from mailplane.signing.policy import signed_header_names, signing_domain
from mailplane.storage import dkim_repo

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: Only forwards are ARC-sealed (RFC 8617's use: a hop that may break the original DKIM).
ARC_KINDS = frozenset({"forward"})
_BARE_LF = re.compile(rb"(?<!\r)\n")
#: RSA on top (see the module docstring).
_STAMP_ORDER: dict[Algorithm, int] = {"rsa": 0, "ed25519": 1}


class SigningUnavailable(Exception):
    """An active selector's key is unusable on this node and ``[dkim] on_error`` is
    ``tempfail``: the message must stay queued."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys this node signs with now, and the active selectors it cannot use."""

    keys: tuple[SigningKey, ...]
    problems: tuple[str, ...] = ()

    def rsa(self) -> SigningKey | None:
        return next((key for key in self.keys if key.algorithm == "rsa"), None)


def load_key_ring(settings: Settings, session_factory: sessionmaker[Session]) -> KeyRing:
    """The active selectors (database) with their private keys (files)."""
    with session_factory() as session:
        active = dkim_repo.active(session)
    keys: list[SigningKey] = []
    problems: list[str] = []
    for row in active:
        try:
            keys.append(load_signing_key(key_path(settings.dkim_keys_dir, row.selector),
                                         row.selector, check_algorithm(row.algorithm),
                                         row.public_key))
        except KeyFileError as exc:
            problems.append(f"selector {row.selector}: {exc}")
    keys.sort(key=lambda key: _STAMP_ORDER[key.algorithm])
    return KeyRing(tuple(keys), tuple(problems))


def _crlf(message: bytes) -> bytes:
    """Line ends as they will be on the wire (the SMTP client writes CRLF): a signature
    over bare LFs would not match what the receiver reads."""
    if message.count(b"\n") == message.count(b"\r\n"):
        return message
    return _BARE_LF.sub(b"\r\n", message)


def stamp(message: bytes, ring: KeyRing, *, mail_from: str, kind: str,
          base_domains: tuple[str, ...], arc_srv_id: str | None,
          timestamp: int | None = None) -> bytes:
    """``message`` with our ARC set (if ``arc_srv_id`` and a forward) and one DKIM
    signature per key on top (blocking: CPU work, run in a thread)."""
    if not ring.keys:
        return message
    message = _crlf(message)
    try:
        headers, body = parse(message)
    except dkim.DKIMException as exc:
        _throttled.warning(("unparsable", type(exc).__name__),
                           "DKIM: message not signed, dkimpy cannot parse it: %s", exc)
        metrics.OUTBOUND_SIGNING.labels("unsigned").inc()
        return message
    domain = signing_domain(headers, mail_from=mail_from, base_domains=base_domains)
    rsa_key = ring.rsa()
    if arc_srv_id is not None and kind in ARC_KINDS and rsa_key is not None:
        arc_set = _arc_seal(message, rsa_key, domain=domain, srv_id=arc_srv_id)
        if arc_set:
            message = arc_set + message
            headers, body = parse(message)
    include = signed_header_names(headers)
    hashed_body = body_hash(body)
    when = int(time.time()) if timestamp is None else timestamp
    signatures = [signature_header(headers, body_hash=hashed_body, include=include,
                                   selector=key.selector, domain=domain,
                                   algorithm=key.algorithm, key=key.private, timestamp=when)
                  for key in ring.keys]
    metrics.OUTBOUND_SIGNING.labels("signed").inc()
    return b"".join(signatures) + message


def _arc_seal(message: bytes, key: SigningKey, *, domain: str, srv_id: str) -> bytes:
    """The next ARC set (RFC 8617, by dkimpy) over our ``Authentication-Results`` (the
    MX's, whose authserv-id is ``srv_id``); nothing when there is none to seal — dkimpy
    ends the chain then — or dkimpy refuses the message."""
    try:
        headers = dkim.arc_sign(message, key.selector.encode("ascii"),
                                domain.encode("ascii"), key.pem,
                                srv_id.encode("ascii"), linesep=b"\r\n")
    except (dkim.DKIMException, NameError) as exc:
        # NameError: dkimpy without its optional ``authres`` (a broken install).
        _throttled.warning(("arc", type(exc).__name__), "ARC: forward not sealed: %s", exc)
        return b""
    return b"".join(headers)


class OutboundSigner:
    """Signs what the worker sends to remote hosts (see the module docstring)."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Session], *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self._monotonic = monotonic
        self._ring: KeyRing | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self._base_domains = tuple(settings.base_domains)
        self._arc_srv_id = settings.mx.hostname if settings.dkim.arc_seal_forwards else None

    async def sign(self, message: bytes, *, mail_from: str, kind: str) -> bytes:
        """The bytes to send to a remote host in place of ``message``.

        Raises :class:`SigningUnavailable` when the message must wait (see the module
        docstring)."""
        if not self.settings.dkim.enabled:
            return message
        ring = await self.key_ring()
        if ring.problems and self.settings.dkim.on_error == "tempfail":
            metrics.OUTBOUND_SIGNING.labels("deferred").inc()
            raise SigningUnavailable("; ".join(ring.problems))
        if not ring.keys:
            metrics.OUTBOUND_SIGNING.labels("unsigned").inc()
            _throttled.warning("no-selector", "DKIM: no active selector, mail leaves "
                               "unsigned (mailplane dkim generate / publish / activate)")
            return message
        return await asyncio.to_thread(
            stamp, message, ring, mail_from=mail_from, kind=kind,
            base_domains=self._base_domains, arc_srv_id=self._arc_srv_id)

    async def key_ring(self) -> KeyRing:
        """The current keys, read again every ``[dkim] refresh_seconds``.  A database
        that does not answer keeps the last ring; with none yet, the mail waits."""
        if self._ring is not None and not self._due():
            return self._ring
        async with self._lock:
            if self._ring is not None and not self._due():
                return self._ring
            try:
                ring = await asyncio.to_thread(load_key_ring, self.settings,
                                               self.session_factory)
            except SQLAlchemyError as exc:
                _throttled.warning("refresh", "DKIM: cannot read the selectors, keeping "
                                   "the last ones: %s", str(exc).splitlines()[0])
                if self._ring is None:
                    raise SigningUnavailable("DKIM selectors unknown: database "
                                             "unavailable") from None
                self._loaded_at = self._monotonic()
                return self._ring
            for problem in ring.problems:
                _throttled.error(("key", problem), "DKIM: active %s", problem)
            self._ring, self._loaded_at = ring, self._monotonic()
            return ring

    def forget(self) -> None:
        """Read the selectors again at the next message (tests; after a CLI change in
        the same process)."""
        self._ring = None

    def _due(self) -> bool:
        return self._monotonic() - self._loaded_at >= self.settings.dkim.refresh_seconds
