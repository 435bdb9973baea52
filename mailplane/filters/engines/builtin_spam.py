"""Built-in spam scorer: the embedded default verdict (SPEC §4).

Modest on purpose: a handful of named header/structure rules, the GTUBE test string,
optional DNSBL lookups of the connecting IPv4 address, and the MX's sender authentication
(:data:`AUTH_RULES`, scored as rspamd scores its SPF/DKIM/DMARC/ARC symbols).  Ordinary
mail (From, Date, Message-ID, a plain-text part) scores 0; a rule adds its score when it
fires and the rule names travel with the result so the trace header can say why.  DNS
trouble never fails a message: a DNSBL that does not answer within
``spam.dns_timeout_seconds`` is skipped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.policy import compat32
from email.utils import parseaddr

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailplane.config.sections import SpamConfig
from mailplane.filters.engines.base import SpamScanResult
from mailplane.mail.auth_results import AuthResults
from mailplane.mail.message import decode_header_text, parse_headers
from mailplane.mail.mime import MimeTooComplex, leaf_parts, parse

log = logging.getLogger(__name__)

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_SCORE = 1000.0
DNSBL_SCORE = 3.0

#: Above this size the parse runs in a thread so the event loop stays free.
_INLINE_PARSE_LIMIT = 64 * 1024
_ADDRESS_IN_TEXT = re.compile(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")


@dataclass(frozen=True, slots=True)
class HeuristicRule:
    """One named check over the parsed message."""

    name: str
    score: float
    fires: Callable[[Message], bool]


def _header(message: Message, name: str) -> str | None:
    """The header decoded from RFC 2047 words; the raw text when it does not decode."""
    value = message.get(name)
    return None if value is None else decode_header_text(str(value))


def _missing(name: str) -> Callable[[Message], bool]:
    return lambda message: not (_header(message, name) or "").strip()


def _subject_all_caps(message: Message) -> bool:
    letters = [c for c in _header(message, "Subject") or "" if c.isalpha() and c.isascii()]
    return len(letters) >= 10 and all(c.isupper() for c in letters)


def _subject_exclamations(message: Message) -> bool:
    return (_header(message, "Subject") or "").count("!") >= 3


def _html_only(message: Message) -> bool:
    types = {part.get_content_type() for part in leaf_parts(message)}
    return "text/html" in types and "text/plain" not in types


def _from_name_other_domain(message: Message) -> bool:
    """A display name showing an address of another domain: classic sender spoofing."""
    display, address = parseaddr(_header(message, "From") or "")
    actual = address.rpartition("@")[2].lower()
    shown = _ADDRESS_IN_TEXT.search(display)
    return bool(actual and shown and shown.group(1).lower() != actual)


@dataclass(frozen=True, slots=True)
class AuthRule:
    """One named check over the MX's sender authentication (SPEC §8b)."""

    name: str
    score: float
    fires: Callable[[AuthResults], bool]


def _dkim_broken(auth: AuthResults) -> bool:
    """A signature that does not verify and none that does (a mailing list's footer on
    mail signed elsewhere breaks one signature, rarely all)."""
    results = {sig.result for sig in auth.dkim}
    return "fail" in results and "pass" not in results


def _dmarc_fail(policy: str) -> Callable[[AuthResults], bool]:
    return lambda auth: auth.dmarc == "fail" and auth.dmarc_applied_policy == policy


#: Scores of rspamd's defaults (R_SPF_FAIL, R_DKIM_REJECT, DMARC_POLICY_*, ARC_REJECT);
#: passes earn nothing back (spammers authenticate their own domains with ease).
AUTH_RULES: tuple[AuthRule, ...] = (
    AuthRule("SPF_FAIL", 1.0, lambda auth: auth.spf == "fail"),
    AuthRule("DKIM_FAIL", 1.0, _dkim_broken),
    AuthRule("DMARC_POLICY_REJECT", 2.0, _dmarc_fail("reject")),
    AuthRule("DMARC_POLICY_QUARANTINE", 1.5, _dmarc_fail("quarantine")),
    AuthRule("DMARC_POLICY_NONE", 0.1, _dmarc_fail("none")),
    AuthRule("ARC_FAIL", 1.0, lambda auth: auth.arc == "fail"),
)


def auth_hits(auth: AuthResults | None) -> list[tuple[str, float]]:
    """The authentication rules that fire (none for mail that was not checked)."""
    if auth is None or not auth.evaluated:
        return []
    return [(rule.name, rule.score) for rule in AUTH_RULES if rule.fires(auth)]


RULES: tuple[HeuristicRule, ...] = (
    HeuristicRule("MISSING_FROM", 1.5, _missing("From")),
    HeuristicRule("MISSING_DATE", 1.0, _missing("Date")),
    HeuristicRule("MISSING_MESSAGE_ID", 0.5, _missing("Message-ID")),
    HeuristicRule("MISSING_SUBJECT", 0.5, _missing("Subject")),
    HeuristicRule("SUBJECT_ALL_CAPS", 1.5, _subject_all_caps),
    HeuristicRule("SUBJECT_EXCLAMATIONS", 1.0, _subject_exclamations),
    HeuristicRule("HTML_ONLY", 1.0, _html_only),
    HeuristicRule("FROM_NAME_OTHER_DOMAIN", 2.0, _from_name_other_domain),
)


def make_resolver(nameserver: str, port: int = 53) -> dns.asyncresolver.Resolver:
    """A resolver that asks exactly one server (tests point it at a local DNS stub)."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [nameserver]
    resolver.port = port
    return resolver


class BuiltinSpamEngine:
    """Scores with :data:`RULES`, GTUBE and the configured DNSBL zones."""

    name = "builtin"

    def __init__(
        self, settings: SpamConfig, *, resolver: dns.asyncresolver.Resolver | None = None
    ) -> None:
        self._threshold = settings.threshold
        self._zones = [zone.strip(".") for zone in settings.dnsbl_zones if zone.strip(".")]
        self._dns_timeout = settings.dns_timeout_seconds
        self._resolver = resolver

    async def check(
        self, data: bytes, *, client_ip: str | None = None, helo: str | None = None,
        headers: Message | None = None, mail_from: str | None = None,
        auth: AuthResults | None = None,
    ) -> SpamScanResult:
        head = headers if headers is not None else parse_headers(data)
        if len(data) <= _INLINE_PARSE_LIMIT or not needs_full_parse(head):
            # Only a full MIME parse of a large message is worth a thread hop; the header
            # rules and one byte search are not (a hop per 100 KB message was 9 % of the
            # MX's samples, docs/performance.md).
            hits = _content_hits(data, head)
        else:
            hits = await asyncio.to_thread(_content_hits, data, head)
        hits.extend(auth_hits(auth))
        if client_ip and self._zones:
            hits.extend(await self._dnsbl_hits(client_ip))
        score = round(sum(score for _, score in hits), 2)
        return SpamScanResult(
            is_spam=score >= self._threshold,
            score=score,
            threshold=self._threshold,
            rules=tuple(name for name, _ in hits),
        )

    async def aclose(self) -> None:
        return None

    async def _dnsbl_hits(self, client_ip: str) -> list[tuple[str, float]]:
        try:
            ip = ipaddress.ip_address(client_ip)
        except ValueError:
            return []
        if ip.version != 4:
            return []
        resolver = self._get_resolver()
        if resolver is None:
            return []
        reversed_ip = ".".join(reversed(str(ip).split(".")))
        listed = await asyncio.gather(
            *(self._listed(resolver, f"{reversed_ip}.{zone}.") for zone in self._zones)
        )
        return [
            (f"DNSBL_{zone}", DNSBL_SCORE)
            for zone, hit in zip(self._zones, listed, strict=True)
            if hit
        ]

    def _get_resolver(self) -> dns.asyncresolver.Resolver | None:
        if self._resolver is None:
            try:
                self._resolver = dns.asyncresolver.Resolver()
            except dns.exception.DNSException as exc:
                log.warning("DNSBL checks skipped: no DNS resolver configuration (%s)", exc)
                return None
        return self._resolver

    async def _listed(self, resolver: dns.asyncresolver.Resolver, qname: str) -> bool:
        """Listed = an A record in 127.0.0.0/8 (127.255.255.x are the lists' error codes)."""
        try:
            answer = await resolver.resolve(qname, "A", lifetime=self._dns_timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return False
        except dns.exception.DNSException as exc:
            log.info("DNSBL lookup %s skipped: %s", qname, exc.__class__.__name__)
            return False
        for record in answer:
            address = ipaddress.ip_address(record.to_text())
            if address in _LISTED_RANGE and address not in _ERROR_RANGE:
                return True
        return False


_LISTED_RANGE = ipaddress.ip_network("127.0.0.0/8")
_ERROR_RANGE = ipaddress.ip_network("127.255.255.0/24")


#: Transfer encodings under which the body bytes *are* the decoded text.
_IDENTITY_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})


def parse_for_rules(data: bytes, headers: Message | None = None) -> Message:
    """The message as the rules need it, parsed no further than they look.

    A single-part message in an identity transfer encoding — nearly all mail — needs only
    its header block: its one part's type is in the headers, and its decoded text is the
    raw body, which the raw ``GTUBE in data`` test already covers.  Anything else (MIME
    parts, base64, quoted-printable) is parsed whole, so encoded GTUBE is still found.
    ``headers`` is the caller's compat32 parse of the header block, if it has one.
    """
    head = headers if headers is not None else parse_headers(data)
    if not needs_full_parse(head):
        return head
    try:
        return parse(data, policy=compat32)
    except MimeTooComplex:
        return head  # beyond the MIME bounds: the header rules and the raw GTUBE test


def needs_full_parse(head: Message) -> bool:
    """Whether the rules must see more than the header block (see :func:`parse_for_rules`)."""
    encoding = str(head.get("Content-Transfer-Encoding", "")).strip().lower()
    return head.get_content_maintype() in ("multipart", "message") or (
        encoding not in _IDENTITY_ENCODINGS)


def _content_hits(data: bytes, headers: Message | None = None) -> list[tuple[str, float]]:
    message = parse_for_rules(data, headers)
    hits: list[tuple[str, float]] = []
    if GTUBE in data or _gtube_in_decoded_text(message):
        hits.append(("GTUBE", GTUBE_SCORE))
    hits.extend((rule.name, rule.score) for rule in RULES if rule.fires(message))
    return hits


def _gtube_in_decoded_text(message: Message) -> bool:
    for part in leaf_parts(message):
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and GTUBE in payload:
            return True
    return False
