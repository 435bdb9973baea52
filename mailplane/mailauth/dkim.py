"""DKIM (RFC 6376, every signature) and ARC (RFC 8617) verification.

Two steps, so no DNS wait and no heavy CPU work ever sits on the event loop:

1. :func:`prepare` — read the signatures and ARC sets from the header block and fetch
   every public key with our resolver, concurrently, under the message's deadline;
2. :func:`verify` — the CPU work, answered from those keys; in a thread for mail over
   :data:`INLINE_LIMIT`.

**DKIM** is verified here, with ``cryptography`` (OpenSSL) for RSA and Ed25519 (RFC 8463):
dkimpy, measured in the bench, made the MX spend 1.24× the CPU per 10 KB message and 3-5×
per 100 KB one (a pure-Python integer-to-bytes loop, a regex pass per canonicalisation
step, the key re-parsed each time; docs/architecture.md).  What ours must agree with —
canonicalisation (§3.4), header selection bottom-up (§5.4.2), the ``b=`` removal, ``l=``
— is checked against dkimpy itself, the independent verifier, on generated messages in
the tests.  Public keys are parsed once per record (an LRU of :data:`KEY_CACHE_ENTRIES`).

Results per signature (RFC 8601 §2.7.1): ``pass``; ``fail`` — the signature or the body
hash does not verify; ``neutral`` — the signature itself is malformed (tags, ``x=``
expired, ``From`` not signed); ``policy`` — ``rsa-sha1``, which RFC 8301 forbids
verifiers to accept; ``permerror`` — no key, a revoked, unusable or sub-1024-bit key;
``temperror`` — the key did not arrive within the time budget.  At most
``[authentication] max_dkim_signatures`` signatures are verified (RFC 6376 §6.1 lets a
verifier limit them); the rest are not reported.

**ARC** (``arc=pass|fail|none``) is dkimpy's chain validation, fed our fetched keys (ARC
is rare and not on the hot path); more than :data:`MAX_ARC_SETS` sets or
:data:`MAX_ARC_KEYS` keys, a malformed instance, or a key that did not arrive is
``fail``.  We record the result; we do not let
it override DMARC (nobody's seal is trusted yet), and we never remove ``ARC-*`` headers,
whose authserv-id is the sealer's claim, not ours (a chain is trusted through its sealers'
keys, RFC 8617).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailplane.mail.auth_results import ArcResult, DkimResult, DkimSignatureResult
from mailplane.mail.message import header_block
from mailplane.mail.rewrite import split_message
from mailplane.mailauth.dns import Deadline, DnsClient, DnsTempError

#: Above this size the CPU work runs in a thread (measured: a 100 KB message costs ~0.1 ms
#: inline on the fast path; a 25 MB one would hold the loop for tens of ms).
INLINE_LIMIT = 256 * 1024
#: The same for a message with ARC sets (dkimpy's pure-Python canonicalisation).
ARC_INLINE_LIMIT = 32 * 1024
#: RFC 8617 §4.2.1: instance numbers run from 1 to 50.
MAX_ARC_SETS = 50
#: Distinct keys an ARC chain may make us fetch; a chain needing more is ``fail`` without
#: a lookup (a real chain has a few sealers; 50 sets would be 100 queries for a stranger).
MAX_ARC_KEYS = 8
#: Characters of ``b=`` in ``header.b`` (RFC 6008: enough to tell signatures apart).
B_PREFIX = 12
#: Parsed public keys kept per process (by their DNS record).
KEY_CACHE_ENTRIES = 1024
#: RFC 8301 §3.2: shorter RSA keys are not accepted.
MIN_RSA_BITS = 1024
#: dkimpy's leeway for a signer's clock (``t=`` in the future, ``x=`` just past).
CLOCK_SLACK_SECONDS = 36000

_QUIET = logging.getLogger("mailplane.mailauth.dkimpy")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False  # dkimpy logs every bad signature at ERROR: forged mail is normal
_ARC_NAMES = (b"arc-seal", b"arc-message-signature")
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_WSP_RUN = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")


class _Malformed(Exception):
    """The signature (or key record) breaks RFC 6376's syntax."""


def parse_tags(value: bytes) -> dict[str, str]:
    """An RFC 6376 §3.2 tag-list; raises :class:`_Malformed` (also for a repeated tag)."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise _Malformed("non-ASCII tag list") from None
    tags: dict[str, str] = {}
    specs = text.split(";")
    if specs and not specs[-1].strip():
        specs.pop()  # a trailing semicolon is allowed
    for spec in specs:
        name, eq, tag_value = spec.partition("=")
        name = name.strip()
        if not eq or not _TAG_NAME.match(name) or name in tags:
            raise _Malformed(f"bad tag {name[:20]!r}")
        tags[name] = tag_value.strip()
    return tags


def _no_space(text: str) -> str:
    return "".join(text.split())


@dataclass
class Signature:
    """One ``DKIM-Signature`` and what :func:`prepare` learned before verifying it."""

    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    prefix: str = ""
    #: Set when the outcome is known without verifying (malformed, no key, DNS).
    early: DkimResult | None = None
    tags: dict[str, str] = field(default_factory=dict)
    #: The header field exactly as received, and its position among the fields.
    field: bytes = b""
    position: int = 0
    #: ``b=`` and ``bh=``, decoded.
    b: bytes = b""
    bh: bytes = b""


@dataclass
class Prepared:
    """Signatures and fetched keys of one message (``key name → TXT``, ``None`` = no key)."""

    signatures: list[Signature] = field(default_factory=list)
    keys: dict[str, bytes | None] = field(default_factory=dict)
    key_errors: set[str] = field(default_factory=set)
    arc_keys: set[str] = field(default_factory=set)
    arc_present: bool = False
    arc_failed: bool = False
    fields: list[bytes] = field(default_factory=list)
    #: Each field's name, lower case (``fields`` order).
    names: list[bytes] = field(default_factory=list)
    #: Key names (``<s>._domainkey.<d>``) to fetch.
    wanted: set[str] = field(default_factory=set)


def _key_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}".lower().rstrip(".")


def _field_name(raw_field: bytes) -> bytes:
    return raw_field.split(b":", 1)[0].rstrip(b" \t").lower()


def _check_signature(tags: dict[str, str], now: float) -> DkimResult | None:
    """RFC 6376 §6.1.1 and RFC 8301: an outcome known from the tags alone, or None."""
    for required in ("v", "a", "b", "bh", "d", "h", "s"):
        if not tags.get(required):
            return "neutral"
    if tags["v"] != "1":
        return "neutral"
    algorithm = tags["a"].lower()
    if algorithm == "rsa-sha1":
        return "policy"
    if algorithm not in ("rsa-sha256", "ed25519-sha256"):
        return "neutral"
    canon = tags.get("c", "simple/simple").lower().split("/")
    if len(canon) > 2 or any(c not in ("simple", "relaxed") for c in canon):
        return "neutral"
    if "q" in tags and "dns/txt" not in tags["q"].lower().split(":"):
        return "neutral"
    domain = tags["d"].lower().rstrip(".")
    identity = tags.get("i", "")
    if identity:
        agent = identity.rpartition("@")[2].lower().rstrip(".")
        if agent != domain and not agent.endswith("." + domain):
            return "neutral"
    if "from" not in [h.strip().lower() for h in tags["h"].split(":")]:
        return "neutral"  # §6.1.1: From must be signed
    for numeric in ("l", "t", "x"):
        if numeric in tags and not tags[numeric].isdigit():
            return "neutral"
    if "t" in tags and int(tags["t"]) > now + CLOCK_SLACK_SECONDS:
        return "neutral"
    if "x" in tags and int(tags["x"]) < now - CLOCK_SLACK_SECONDS:
        return "neutral"  # expired
    return None


def _dkim_signature(raw_field: bytes, position: int, now: float) -> tuple[Signature, str | None]:
    """A signature's identity and the key it needs (None: judged already)."""
    try:
        tags = parse_tags(raw_field.split(b":", 1)[1])
    except _Malformed:
        return Signature(early="neutral"), None
    for encoded in ("b", "bh"):  # base64 with folding whitespace: compact once
        if encoded in tags:
            tags[encoded] = _no_space(tags[encoded])
    signature = Signature(domain=tags.get("d", "").lower(), selector=tags.get("s", ""),
                          algorithm=tags.get("a", "").lower(),
                          prefix=tags.get("b", "")[:B_PREFIX], tags=tags,
                          field=raw_field, position=position)
    signature.early = _check_signature(tags, now)
    if signature.early is not None:
        return signature, None
    try:
        signature.b = base64.b64decode(tags["b"], validate=True)
        signature.bh = base64.b64decode(tags["bh"], validate=True)
    except (binascii.Error, ValueError):
        signature.early = "neutral"
        return signature, None
    return signature, _key_name(signature.selector, signature.domain)


def _arc_keys(fields: list[bytes], field_names: list[bytes]) -> tuple[set[str], bool]:
    """Key names of every ARC-Seal and ARC-Message-Signature; False when the sets are
    malformed or too many (the chain fails without a lookup)."""
    names: set[str] = set()
    for raw_field, name in zip(fields, field_names, strict=True):
        if name not in _ARC_NAMES:
            continue
        try:
            tags = parse_tags(raw_field.split(b":", 1)[1])
            instance = int(tags["i"])
        except (_Malformed, KeyError, ValueError):
            return names, False
        if not 1 <= instance <= MAX_ARC_SETS:
            return names, False
        selector, domain = tags.get("s", ""), tags.get("d", "")
        if not selector or not domain:
            return names, False
        names.add(_key_name(selector, domain))
        if len(names) > MAX_ARC_KEYS:
            return set(), False
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


def has_signatures(raw: bytes) -> bool:
    """Whether the header block may hold a DKIM-Signature or an ARC set."""
    lowered = header_block(raw).lower()
    return b"dkim-signature" in lowered or b"arc-" in lowered


def read(raw: bytes, *, max_signatures: int) -> Prepared:
    """The signatures and ARC sets of ``raw`` and the key names they need
    (:attr:`Prepared.wanted`); nothing looked up yet."""
    prepared = Prepared()
    if not has_signatures(raw):
        return prepared
    fields, _rest = split_message(raw)
    prepared.fields = fields
    prepared.names = names = [_field_name(f) for f in fields]
    now = time.time()
    for position, (raw_field, name) in enumerate(zip(fields, names, strict=True)):
        if name != b"dkim-signature" or len(prepared.signatures) >= max_signatures:
            continue
        signature, key = _dkim_signature(raw_field, position, now)
        prepared.signatures.append(signature)
        if key is not None:
            prepared.wanted.add(key)
    arc_keys, arc_ok = _arc_keys(fields, names)
    prepared.arc_present = any(name in _ARC_NAMES for name in names)
    prepared.arc_failed = prepared.arc_present and not arc_ok
    if arc_ok:
        prepared.arc_keys = arc_keys
        prepared.wanted |= arc_keys
    return prepared


async def fetch(dns: DnsClient, deadline: Deadline, prepared: Prepared) -> Prepared:
    """Fetch every key ``prepared`` wants, concurrently (never raises for DNS)."""
    wanted = prepared.wanted
    if len(wanted) == 1:  # the usual case: no task for one lookup
        await _fetch(dns, deadline, next(iter(wanted)), prepared)
    elif wanted:
        await asyncio.gather(*(_fetch(dns, deadline, name, prepared) for name in wanted))
    for signature in prepared.signatures:
        if signature.early is None:
            key_name = _key_name(signature.selector, signature.domain)
            if key_name in prepared.key_errors:
                signature.early = "temperror"
            elif prepared.keys.get(key_name) is None:
                signature.early = "permerror"  # RFC 6376 §6.1.2: no key for signature
    return prepared


def fetch_failed(prepared: Prepared) -> None:
    """The fetch was stopped (time budget): every key not fetched is a temperror."""
    prepared.key_errors |= {name for name in prepared.wanted if name not in prepared.keys}
    for signature in prepared.signatures:
        if signature.early is None:
            if _key_name(signature.selector, signature.domain) in prepared.key_errors:
                signature.early = "temperror"
            elif prepared.keys.get(_key_name(signature.selector, signature.domain)) is None:
                signature.early = "permerror"


async def prepare(dns: DnsClient, deadline: Deadline, raw: bytes, *,
                  max_signatures: int) -> Prepared:
    """:func:`read` then :func:`fetch`."""
    return await fetch(dns, deadline, read(raw, max_signatures=max_signatures))


# --- public keys ----------------------------------------------------------------------------

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
_keys: OrderedDict[bytes, tuple[PublicKey | None, frozenset[str]]] = OrderedDict()


def _parse_key(record: bytes) -> tuple[PublicKey | None, frozenset[str]]:
    """A key record (RFC 6376 §3.6.1) → the key (None: unusable) and its ``t=`` flags."""
    try:
        tags = parse_tags(record)
    except _Malformed:
        return None, frozenset()
    if tags.get("v", "DKIM1") != "DKIM1":
        return None, frozenset()
    services = [s.strip() for s in tags.get("s", "*").split(":")]
    hashes_allowed = [h.strip().lower() for h in tags.get("h", "sha256").split(":")]
    if ("*" not in services and "email" not in services) or "sha256" not in hashes_allowed:
        return None, frozenset()
    flags = frozenset(f.strip().lower() for f in tags.get("t", "").split(":") if f.strip())
    try:
        data = base64.b64decode(_no_space(tags.get("p", "")), validate=True)
    except (binascii.Error, ValueError):
        return None, flags
    if not data:
        return None, flags  # revoked
    kind = tags.get("k", "rsa").lower()
    try:
        if kind == "ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(data), flags
        if kind == "rsa":
            key = serialization.load_der_public_key(data)
            if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
                return key, flags
    except ValueError:
        pass
    return None, flags


def public_key(record: bytes) -> tuple[PublicKey | None, frozenset[str]]:
    """:func:`_parse_key`, remembered per record."""
    cached = _keys.get(record)
    if cached is None:
        cached = _parse_key(record)
        _keys[record] = cached
        if len(_keys) > KEY_CACHE_ENTRIES:
            _keys.popitem(last=False)
    else:
        _keys.move_to_end(record)
    return cached


# --- canonicalisation (RFC 6376 §3.4) -------------------------------------------------------


def _relaxed_header(raw_field: bytes) -> bytes:
    name, _, value = raw_field.partition(b":")
    value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    return name.rstrip(b" \t").lower() + b":" + value.strip(b" ") + b"\r\n"


def _strip_trailing_lines(body: bytes) -> bytes:
    """Every empty line at the end removed, the last line ended with CRLF."""
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    return body[:end] + b"\r\n"


def canonical_body(body: bytes, relaxed: bool) -> bytes:
    if relaxed:
        # Most bodies have no tab, no run of spaces and no space before a line end:
        # then the relaxed form is the simple one, found by three memchr-speed scans.
        if b"\t" in body or b"  " in body or b" \r\n" in body:
            body = _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"\r\n", body))
        canonical = _strip_trailing_lines(body)
        return b"" if canonical == b"\r\n" else canonical
    return _strip_trailing_lines(body)


def without_b_value(value: bytes) -> bytes:
    """A signature header's value with the ``b=`` tag's value removed (RFC 6376 §3.7),
    byte for byte as dkimpy removes it: the base64 and the folding inside it go, the
    whitespace after it stays (and a final line break goes)."""
    start = 0
    while start <= len(value):
        end = value.find(b";", start)
        end = len(value) if end < 0 else end
        name, eq, _ = value[start:end].partition(b"=")
        if eq and name.strip() == b"b":
            tag_end = start + len(name) + 1
            last = end
            while last > tag_end and value[last - 1] not in _BASE64:
                last -= 1
            tail = value[last:end]
            if end == len(value) and tail.endswith(b"\n"):
                tail = tail[:-2] if tail.endswith(b"\r\n") else tail[:-1]
            return value[:tag_end] + tail + value[end:]
        start = end + 1
    return value


BodyDigests = dict[tuple[str, int | None], bytes | None]


def _body_matches(body: bytes, relaxed: bool, length: int | None, expected: bytes,
                  bodies: BodyDigests) -> bool:
    """Whether the canonical body (first ``length`` bytes) hashes to ``expected``.

    Relaxed without ``l=``, the simple form is tried first: when its hash matches, it *is*
    the relaxed form (it has no whitespace to relax — SHA-256 is collision resistant), so
    most bodies are hashed once and never scanned for tabs or runs of spaces."""
    if relaxed and length is None:
        if ("quick", None) not in bodies:
            quick = _strip_trailing_lines(body)
            bodies[("quick", None)] = hashlib.sha256(b"" if quick == b"\r\n" else quick).digest()
        if bodies[("quick", None)] == expected:
            return True
    key = "relaxed" if relaxed else "simple"
    if (key, length) not in bodies:
        canonical = canonical_body(body, relaxed)
        if length is not None and length > len(canonical):
            bodies[(key, length)] = None  # l= beyond the body (§3.5): never matches
        else:
            bodies[(key, length)] = hashlib.sha256(
                canonical if length is None else canonical[:length]).digest()
    return bodies[(key, length)] == expected


def _signed_headers(fields: list[bytes], lowered: list[bytes],
                    names: list[str]) -> list[bytes]:
    """§5.4.2: for each name, the last instance not used yet (none left: nothing)."""
    next_index: dict[str, int] = {}
    selected: list[bytes] = []
    for name in names:
        index = next_index.get(name, len(fields))
        wanted = name.encode()
        while index > 0:
            index -= 1
            if lowered[index] == wanted:
                selected.append(fields[index])
                break
        next_index[name] = index
    return selected


def _verify_signature(signature: Signature, prepared: Prepared, body: bytes,
                      record: bytes, bodies: BodyDigests) -> DkimResult:
    key, flags = public_key(record)
    if key is None:
        return "permerror"
    tags = signature.tags
    algorithm = tags["a"].lower()
    if isinstance(key, rsa.RSAPublicKey) != algorithm.startswith("rsa-"):
        return "permerror"  # the key's type is not the signature's
    if "s" in flags and tags.get("i"):
        agent = tags["i"].rpartition("@")[2].lower().rstrip(".")
        if agent != signature.domain.rstrip("."):
            return "fail"  # t=s: no subdomain identities (§3.6.1)
    canon = tags.get("c", "simple/simple").lower().split("/")
    relaxed_headers, relaxed_body = canon[0] == "relaxed", len(canon) == 2 and canon[1] == "relaxed"
    length = int(tags["l"]) if "l" in tags else None
    if not _body_matches(body, relaxed_body, length, signature.bh, bodies):
        return "fail"
    names = [h.strip().lower() for h in tags["h"].split(":")]
    names.append("from")  # an added From must break the signature (RFC 6376 §8.15)
    canonicalise = _relaxed_header if relaxed_headers else (lambda f: f)
    data = b"".join(canonicalise(f) for f in _signed_headers(prepared.fields, prepared.names,
                                                             names))
    name, _, value = signature.field.partition(b":")
    unsigned = name + b":" + without_b_value(value)
    data += canonicalise(unsigned).rstrip(b"\r\n") if relaxed_headers else unsigned.rstrip()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature.b, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature.b, hashlib.sha256(data).digest())
    except InvalidSignature:
        return "fail"
    return "pass"


def _verify_sync(raw: bytes, prepared: Prepared) -> tuple[tuple[DkimSignatureResult, ...],
                                                          ArcResult]:
    results: list[DkimSignatureResult] = []
    if prepared.signatures:
        separator = raw.find(b"\r\n\r\n")
        body = raw[separator + 4:] if separator >= 0 else b""
        bodies: BodyDigests = {}
        for signature in prepared.signatures:
            outcome = signature.early
            if outcome is None:
                record = prepared.keys[_key_name(signature.selector, signature.domain)]
                assert record is not None  # prepare() judged missing keys already
                outcome = _verify_signature(signature, prepared, body, record, bodies)
            results.append(DkimSignatureResult(domain=signature.domain,
                                               selector=signature.selector, result=outcome,
                                               algorithm=signature.algorithm,
                                               signature_prefix=signature.prefix))
    return tuple(results), _verify_arc(raw, prepared)


def _dns_answers(prepared: Prepared) -> Any:
    """dkimpy's ``dnsfunc``: the fetched record for a key name, or nothing."""

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        return prepared.keys.get(text.lower().rstrip("."))

    return lookup


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


def verify_inline(raw: bytes, prepared: Prepared) -> bool:
    """Whether :func:`verify_now` may run on the event loop for this message (dkimpy's
    ARC validation is slower: a message with ARC sets goes to a thread sooner)."""
    return len(raw) <= (ARC_INLINE_LIMIT if prepared.arc_present else INLINE_LIMIT)


def verify_now(raw: bytes, prepared: Prepared) -> tuple[tuple[DkimSignatureResult, ...],
                                                        ArcResult]:
    """Every prepared signature's result and the ARC chain's, in this thread."""
    if not prepared.signatures and not prepared.arc_present:
        return (), "none"
    return _verify_sync(raw, prepared)


async def verify(raw: bytes, prepared: Prepared) -> tuple[tuple[DkimSignatureResult, ...],
                                                          ArcResult]:
    """:func:`verify_now`, in a thread when the message is over :data:`INLINE_LIMIT`."""
    if verify_inline(raw, prepared):
        return verify_now(raw, prepared)
    return await asyncio.to_thread(verify_now, raw, prepared)
