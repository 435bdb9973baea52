"""What our DKIM signature covers and which domain signs (SPEC §8b; RFC 6376 §5.4).

**Headers.** Every header of RFC 6376 §5.4.1's list that is present is signed, once per
instance; the ones a replay or a mailing list would most profit from changing are also
*oversigned* (§5.4.2, §8.15): one extra, empty instance in ``h=``, so a receiver sees a
header added after signing as a broken signature.  That is the originator set (From,
Sender, Reply-To, To, Cc, Date, Message-ID, In-Reply-To, References, Subject), the MIME
headers that say how to read the body, and RFC 3834's Auto-Submitted and RFC 8058's
List-Unsubscribe(-Post) when present.  Received, Return-Path, Bcc and other
DKIM-Signatures are never signed (§5.4.1, "SHOULD NOT").

**Signing domain.** Customer addresses are ``local@<subdomain>.<base domain>``; mail
whose ``From:`` is under a base domain is signed ``d=<base domain>``: DMARC's relaxed
alignment (RFC 9989) passes for every customer subdomain, and one key record per selector
and base domain serves them all — signing ``d=<subdomain>`` would need a record under
each of thousands of subdomains (a wildcard cannot stand in: ``*.example.net`` answers for
``sel._domainkey.e06.example.net`` with the SPF record).  Mail whose ``From:`` is foreign —
a forward, a bounce returned through SRS — is signed by the base domain of our address
that forwards it (its ``Delivered-To:``, which the forward puts on top), else of its
envelope sender (an SRS address under a base domain), else the first base domain: our
signature vouches for the hop we made, next to the original one kept intact.

A forward whose ``From:`` claims a hosted domain gets an *aligned* signature, so the signer
relies on the MX never forwarding such mail from the Internet unless it authenticated
(SPEC §8b: mail claiming a hosted domain that does not pass is quarantined as なりすまし,
and only inbox mail is forwarded) — otherwise a forward would launder a spoof of our own
domain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from email.utils import getaddresses

#: RFC 6376 §5.4.1's recommended set, plus Auto-Submitted (RFC 3834) and
#: List-Unsubscribe-Post (RFC 8058 §4 requires it signed).
SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from", b"sender", b"reply-to", b"subject", b"date", b"message-id", b"to", b"cc",
    b"mime-version", b"content-type", b"content-transfer-encoding", b"content-id",
    b"content-description", b"resent-date", b"resent-from", b"resent-sender", b"resent-to",
    b"resent-cc", b"resent-message-id", b"in-reply-to", b"references", b"list-id",
    b"list-help", b"list-unsubscribe", b"list-unsubscribe-post", b"list-subscribe",
    b"list-post", b"list-owner", b"list-archive", b"auto-submitted",
)
#: Signed one extra time, present or not (RFC 6376 §5.4.2).
OVERSIGNED: frozenset[bytes] = frozenset({
    b"from", b"sender", b"reply-to", b"subject", b"date", b"message-id", b"to", b"cc",
    b"in-reply-to", b"references", b"mime-version", b"content-type",
    b"content-transfer-encoding", b"list-unsubscribe", b"list-unsubscribe-post",
    b"auto-submitted",
})


#: Instances of one header signed at most: a hostile message with thousands of ``To:``
#: lines must not make our signature header as large (the bottom-most ones are signed, as
#: verifiers select them, §5.4.2; past the cap there is no extra empty instance either).
MAX_INSTANCES = 16


def signed_header_names(headers: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    """The ``h=`` list for a message with ``headers`` (name, value pairs in order)."""
    present = Counter(name.strip().lower() for name, _value in headers)
    names: list[bytes] = []
    for name in SIGNED_HEADERS:
        count = min(present[name], MAX_INSTANCES)
        if name in OVERSIGNED and present[name] < MAX_INSTANCES:
            count += 1
        names.extend([name] * count)
    return names


def base_domain_of(domain: str, base_domains: Sequence[str]) -> str | None:
    """The base domain ``domain`` is, or is under (the longest, if they nest)."""
    domain = domain.strip().rstrip(".").lower()
    matches = [base for base in base_domains
               if domain == base or domain.endswith("." + base)]
    return max(matches, key=len) if matches else None


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first (topmost) ``name`` header's value, unfolded, or None."""
    for key, value in headers:
        if key.strip().lower() == name:
            return value.decode("utf-8", "replace").replace("\r\n", "").replace("\n", "")
    return None


def _address_domain(value: str | None) -> str:
    if not value:
        return ""
    for _name, address in getaddresses([value]):
        if "@" in address:
            return address.rpartition("@")[2]
    return ""


def signing_domain(headers: Sequence[tuple[bytes, bytes]], *, mail_from: str,
                   base_domains: Sequence[str]) -> str:
    """The ``d=`` of our signature (see the module docstring for why)."""
    for domain in (_address_domain(_header(headers, b"from")),
                   _address_domain(_header(headers, b"delivered-to")),
                   mail_from.rpartition("@")[2]):
        base = base_domain_of(domain, base_domains) if domain else None
        if base is not None:
            return base
    return base_domains[0]
