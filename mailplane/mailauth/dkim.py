"""DKIM (RFC 6376, every signature) and ARC (RFC 8617) verification with dkimpy.

dkimpy is the maintained Python implementation (Ed25519 through PyNaCl, RSA, ARC, the RFC
8301 key-size floor).  Its own DNS lookups are synchronous, so the work is split in two:

1. :func:`prepare` — read the signatures from the header block and fetch every public
   key with our resolver, concurrently and under the message's deadline;
2. :func:`verify` — dkimpy's CPU work (canonicalisation, hashing, the signature check)
   answered from those keys; in a thread for mail over :data:`INLINE_LIMIT`, so a large
   message never holds the event loop.

Results per signature (RFC 8601 §2.7.1): ``pass``; ``fail`` — the signature or the body
hash does not verify; ``neutral`` — the signature itself is malformed (tags, ``x=``
expired, ``From`` not signed); ``permerror`` — no key, a revoked, unusable or too small
key; ``temperror`` — the key did not arrive within the time budget.  At most
``[authentication] max_dkim_signatures`` signatures are verified (RFC 6376 §6.1 lets a
verifier limit them); the rest are not reported.

ARC (``arc=pass|fail|none``): the chain as dkimpy validates it; more than
:data:`MAX_ARC_SETS` sets, a set with a malformed instance, or a key that did not arrive is
``fail``.  We record the result; we do not let it override DMARC (nobody's seal is
trusted yet), and we never remove ``ARC-*`` headers, whose authserv-id is the sealer's
claim, not ours (RFC 8617 §4.1.3: a chain is trusted through its sealers' keys).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dkim
import dkim.util

from mailplane.mail.auth_results import ArcResult, DkimResult, DkimSignatureResult
from mailplane.mail.message import header_block
from mailplane.mailauth.dns import Deadline, DnsClient, DnsTempError

#: Above this size dkimpy's work runs in a thread (the builtin spam engine's bound).
INLINE_LIMIT = 64 * 1024
#: RFC 8617 §4.2.1: instance numbers run from 1 to 50.
MAX_ARC_SETS = 50
#: Characters of ``b=`` in ``header.b`` (RFC 6008: enough to tell signatures apart).
B_PREFIX = 12

_QUIET = logging.getLogger("mailplane.mailauth.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # dkimpy logs every bad signature at ERROR: forged mail is normal
_ARC_NAMES = (b"arc-seal", b"arc-message-signature")


@dataclass
class Signature:
    """One ``DKIM-Signature`` and what :func:`prepare` learned before verifying it."""

    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    prefix: str = ""
    #: Set when the outcome is known without verifying (malformed, no key, DNS).
    early: DkimResult | None = None


@dataclass
class Prepared:
    """Signatures and fetched keys of one message (``key name → TXT``, ``None`` = no key)."""

    signatures: list[Signature] = field(default_factory=list)
    keys: dict[str, bytes | None] = field(default_factory=dict)
    key_errors: set[str] = field(default_factory=set)
    arc_keys: set[str] = field(default_factory=set)
    arc_present: bool = False
    arc_failed: bool = False


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace").strip()


def _key_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}".lower().rstrip(".")


def _dkim_signature(value: bytes) -> tuple[Signature, str | None]:
    """A signature's identity and the key it needs (None: judged already)."""
    try:
        tags = dkim.util.parse_tag_value(value)
    except dkim.util.InvalidTagValueList:
        return Signature(early="neutral"), None
    signature = Signature(domain=_text(tags.get(b"d", b"")).lower(),
                          selector=_text(tags.get(b"s", b"")),
                          algorithm=_text(tags.get(b"a", b"")),
                          prefix=re.sub(rb"\s+", b"", tags.get(b"b", b""))[:B_PREFIX]
                          .decode("ascii", "replace"))
    try:
        dkim.validate_signature_fields(tags)
    except dkim.DKIMException:
        signature.early = "neutral"
        return signature, None
    signed = [h.strip().lower() for h in tags.get(b"h", b"").split(b":")]
    if b"from" not in signed:
        signature.early = "neutral"  # RFC 6376 §6.1.1: From not signed
        return signature, None
    return signature, _key_name(signature.selector, signature.domain)


def _arc_keys(headers: Sequence[tuple[bytes, bytes]]) -> tuple[set[str], bool]:
    """Key names of every ARC-Seal and ARC-Message-Signature; False when the sets are
    malformed or too many (the chain fails without a lookup)."""
    names: set[str] = set()
    for name, value in headers:
        if name.lower() not in _ARC_NAMES:
            continue
        try:
            tags = dkim.util.parse_tag_value(value)
            instance = int(_text(tags[b"i"]))
        except (dkim.util.InvalidTagValueList, KeyError, ValueError):
            return names, False
        if not 1 <= instance <= MAX_ARC_SETS:
            return names, False
        selector, domain = _text(tags.get(b"s", b"")), _text(tags.get(b"d", b""))
        if not selector or not domain:
            return names, False
        names.add(_key_name(selector, domain))
    return names, True


async def _fetch(dns: DnsClient, deadline: Deadline, name: str,
                 prepared: Prepared) -> None:
    try:
        records, _exists = await dns.txt(name, deadline)
    except DnsTempError:
        prepared.key_errors.add(name)
        return
    keys = [r for r in records if b"p=" in r] or records
    prepared.keys[name] = keys[0] if keys else None


async def prepare(dns: DnsClient, deadline: Deadline, raw: bytes, *,
                  max_signatures: int) -> Prepared:
    """Read the signatures and ARC sets and fetch their keys (never raises for DNS)."""
    prepared = Prepared()
    try:
        headers, _ = dkim.rfc822_parse(header_block(raw))
    except dkim.DKIMException:
        headers = []
        if b"dkim-signature" in header_block(raw).lower():
            prepared.signatures.append(Signature(early="neutral"))
    wanted: set[str] = set()
    for name, value in headers:
        if name.lower() != b"dkim-signature" or len(prepared.signatures) >= max_signatures:
            continue
        signature, key = _dkim_signature(value)
        prepared.signatures.append(signature)
        if key is not None:
            wanted.add(key)
    arc_keys, arc_ok = _arc_keys(headers)
    prepared.arc_present = any(name.lower() in _ARC_NAMES for name, _ in headers)
    prepared.arc_failed = prepared.arc_present and not arc_ok
    if arc_ok:
        prepared.arc_keys = arc_keys
        wanted |= arc_keys
    await asyncio.gather(*(_fetch(dns, deadline, name, prepared) for name in wanted))
    for signature in prepared.signatures:
        if signature.early is None:
            name = _key_name(signature.selector, signature.domain)
            if name in prepared.key_errors:
                signature.early = "temperror"
            elif prepared.keys.get(name) is None:
                signature.early = "permerror"  # RFC 6376 §6.1.2: no key for signature
    return prepared


def _dns_answers(prepared: Prepared) -> Any:
    """dkimpy's ``dnsfunc``: the fetched record for a key name, or nothing."""

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        return prepared.keys.get(text.lower().rstrip("."))

    return lookup


def _verify_one(verifier: dkim.DKIM, index: int, signature: Signature,
                prepared: Prepared) -> DkimResult:
    name = _key_name(signature.selector, signature.domain)
    try:
        dkim.evaluate_pk(name, prepared.keys[name])
    except dkim.DKIMException:
        return "permerror"  # malformed, revoked (empty p=) or unknown key type
    try:
        return "pass" if verifier.verify(idx=index, dnsfunc=_dns_answers(prepared)) else "fail"
    except dkim.ValidationError:
        return "fail"  # body hash mismatch (the fields were validated in prepare)
    except dkim.MessageFormatError:
        return "neutral"
    except dkim.DKIMException:
        return "permerror"  # e.g. a key below RFC 8301's 1024 bits


def _verify_sync(raw: bytes, prepared: Prepared) -> tuple[tuple[DkimSignatureResult, ...],
                                                          ArcResult]:
    results: list[DkimSignatureResult] = []
    verifier: dkim.DKIM | None = None
    for index, signature in enumerate(prepared.signatures):
        outcome = signature.early
        if outcome is None:
            try:
                if verifier is None:
                    verifier = dkim.DKIM(raw, logger=_QUIET)
                outcome = _verify_one(verifier, index, signature, prepared)
            except dkim.DKIMException:
                outcome = "neutral"  # the message itself cannot be parsed as DKIM needs
        results.append(DkimSignatureResult(domain=signature.domain,
                                           selector=signature.selector, result=outcome,
                                           algorithm=signature.algorithm,
                                           signature_prefix=signature.prefix))
    return tuple(results), _verify_arc(raw, prepared)


def _verify_arc(raw: bytes, prepared: Prepared) -> ArcResult:
    if not prepared.arc_present:
        return "none"
    if prepared.arc_failed or prepared.arc_keys & prepared.key_errors:
        return "fail"
    try:
        chain, _results, _reason = dkim.ARC(raw, logger=_QUIET).verify(
            dnsfunc=_dns_answers(prepared))
    except dkim.DKIMException:
        return "fail"
    return "pass" if chain == dkim.CV_Pass else "fail"


async def verify(raw: bytes, prepared: Prepared) -> tuple[tuple[DkimSignatureResult, ...],
                                                          ArcResult]:
    """Every prepared signature's result and the ARC chain's."""
    if not prepared.signatures and not prepared.arc_present:
        return (), "none"
    if len(raw) <= INLINE_LIMIT:
        return _verify_sync(raw, prepared)
    return await asyncio.to_thread(_verify_sync, raw, prepared)
