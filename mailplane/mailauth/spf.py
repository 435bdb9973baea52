"""SPF (RFC 7208): ``check_host()`` as an async evaluator on our DNS client.

Written here rather than taken from pyspf, which is synchronous (it would hold an event
loop thread per lookup) and barely maintained; Stalwart's mail-auth is the model.  What it
keeps from the RFC, and why each matters on an MX anyone can connect to:

- the whole record is parsed before anything is evaluated: a syntax error anywhere is
  ``permerror`` (§4.6), so a record never "half works";
- at most 10 terms that query the DNS (``include``, ``a``, ``mx``, ``ptr``, ``exists``,
  ``redirect``) over the whole evaluation, includes and redirects counted (§4.6.4) — more
  is ``permerror``; at most 2 void lookups (§4.6.4); an ``mx`` with more than 10 names is
  ``permerror``, ``ptr`` looks at the first 10 names only (§4.6.4);
- a DNS timeout or server failure ends the check with ``temperror`` (§2.6.6) — and the
  message's time budget (:class:`~mailplane.mailauth.dns.Deadline`) bounds it all;
- macros (§7) with their transformers, URL escaping, and the 253-character truncation;
  ``exp=`` is only syntax-checked: we never reject at SMTP, so no explanation is needed.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field

from mailplane.mail.auth_results import SpfResult
from mailplane.mailauth.dns import Answer, Deadline, DnsClient, DnsTempError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: RFC 7208 §4.6.4.
MAX_DNS_TERMS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_NAMES = 10
MAX_PTR_NAMES = 10

_QUALIFIERS: dict[str, SpfResult] = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_DIRECTIVE = re.compile(r"([+\-~?]?)(all|include|a|mx|ptr|ip4|ip6|exists)(?=[:/]|$)(.*)\Z",
                        re.IGNORECASE | re.DOTALL)
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)=(.*)\Z", re.DOTALL)
_DUAL_CIDR = re.compile(r"(.*?)(?:/(0|[1-9][0-9]?))?(?://(0|[1-9][0-9]{0,2}))?\Z", re.DOTALL)
_CIDR_LENGTH = re.compile(r"0|[1-9][0-9]{0,2}")
_MACRO = re.compile(r"%(?:\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}|([%_-]))")
_TOPLABEL = re.compile(r"\.([A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*"
                       r"[A-Za-z0-9])\.?\Z")
_LETTERS = frozenset("slodiphv")
_EXP_LETTERS = _LETTERS | frozenset("crt")


class SpfPermError(Exception):
    """The record (or the evaluation) breaks a rule of RFC 7208: ``permerror``."""


class _NoRecord(Exception):
    """The domain publishes no SPF record."""


@dataclass(frozen=True, slots=True)
class Macro:
    letter: str
    digits: int
    reverse: bool
    delimiters: str


MacroString = tuple[str | Macro, ...]


@dataclass(frozen=True, slots=True)
class Directive:
    qualifier: str
    mechanism: str
    domain: MacroString | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True, slots=True)
class SpfRecord:
    directives: tuple[Directive, ...]
    redirect: MacroString | None = None


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    result: SpfResult
    #: The domain whose policy was checked (MAIL FROM's, or HELO's for the null sender).
    domain: str
    reason: str = ""


def parse_macro_string(text: str, *, exp: bool = False) -> MacroString:
    """RFC 7208 §7.1 ``macro-string``; raises :class:`SpfPermError`."""
    parts: list[str | Macro] = []
    position = 0
    while position < len(text):
        percent = text.find("%", position)
        literal = text[position:] if percent < 0 else text[position:percent]
        if any(not ("\x21" <= c <= "\x7e") for c in literal):
            raise SpfPermError("invalid character in a domain-spec")
        if literal:
            parts.append(literal)
        if percent < 0:
            break
        match = _MACRO.match(text, percent)
        if match is None:
            raise SpfPermError("invalid macro")
        letter, digits, reverse, delimiters, escape = match.groups()
        if escape is not None:
            parts.append({"%": "%", "_": " ", "-": "%20"}[escape])
        else:
            if letter.lower() not in (_EXP_LETTERS if exp else _LETTERS):
                raise SpfPermError(f"macro letter {letter!r} not allowed here")
            if digits and int(digits) == 0:
                raise SpfPermError("a macro transformer of 0")
            parts.append(Macro(letter, min(int(digits), 128) if digits else 0,
                               bool(reverse), delimiters))
        position = match.end()
    return tuple(parts)


def _domain_spec(text: str) -> MacroString:
    """A ``domain-spec``: a macro-string ending in a macro or in ``"." toplabel``."""
    parsed = parse_macro_string(text)
    if not parsed:
        raise SpfPermError("empty domain-spec")
    last = parsed[-1]
    if isinstance(last, str) and not _TOPLABEL.search(last):
        raise SpfPermError(f"{text!r} does not end in a top-level label")
    return parsed


def _cidr(value: str | None, default: int) -> int:
    return default if value is None else int(value)


@functools.lru_cache(maxsize=4096)
def parse_record(text: str) -> SpfRecord:
    """A ``v=spf1`` record (RFC 7208 §4.6.1, §12); raises :class:`SpfPermError`.
    Remembered per text: a sender's record is parsed once, not once per message."""
    terms = text.split(" ")
    if terms[0].lower() != "v=spf1":
        raise SpfPermError("not an SPF record")
    directives: list[Directive] = []
    redirect: MacroString | None = None
    seen_exp = False
    for term in terms[1:]:
        if not term:
            continue
        directive = _DIRECTIVE.match(term)
        if directive is not None:
            directives.append(_directive(*directive.groups()))
            continue
        modifier = _MODIFIER.match(term)
        if modifier is None:
            raise SpfPermError(f"unknown term {term[:40]!r}")
        name, value = modifier.group(1).lower(), modifier.group(2)
        if name == "redirect":
            if redirect is not None:
                raise SpfPermError("redirect given twice")
            redirect = _domain_spec(value)
        elif name == "exp":
            if seen_exp:
                raise SpfPermError("exp given twice")
            seen_exp = True
            _domain_spec(value)
        else:
            parse_macro_string(value, exp=True)  # unknown modifiers: syntax only (§6)
    return SpfRecord(tuple(directives), redirect)


def _directive(qualifier: str, name: str, rest: str) -> Directive:
    qualifier = qualifier or "+"
    mechanism = name.lower()
    if mechanism == "all":
        if rest:
            raise SpfPermError("all takes no argument")
        return Directive(qualifier, mechanism)
    if mechanism in ("include", "exists"):
        if not rest.startswith(":") or len(rest) < 2:
            raise SpfPermError(f"{mechanism} needs a domain")
        return Directive(qualifier, mechanism, domain=_domain_spec(rest[1:]))
    if mechanism in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise SpfPermError(f"{mechanism} needs a network")
        address, slash, length = rest[1:].partition("/")
        limit = 32 if mechanism == "ip4" else 128
        if slash and (not _CIDR_LENGTH.fullmatch(length) or int(length) > limit):
            raise SpfPermError(f"invalid {mechanism} prefix length")
        bits = int(length) if slash else limit
        try:
            if mechanism == "ip4":
                return Directive(qualifier, mechanism, network=ipaddress.IPv4Network(
                    (ipaddress.IPv4Address(address), bits), strict=False))
            return Directive(qualifier, mechanism, network=ipaddress.IPv6Network(
                (ipaddress.IPv6Address(address), bits), strict=False))
        except ValueError:
            raise SpfPermError(f"invalid {mechanism} network") from None
    # a, mx, ptr: [":" domain-spec]; a and mx also [dual-cidr]
    match = _DUAL_CIDR.match(rest)
    assert match is not None  # the pattern matches any text
    spec, cidr4, cidr6 = match.groups()
    if mechanism == "ptr" and (cidr4 is not None or cidr6 is not None):
        raise SpfPermError("ptr takes no CIDR length")
    if (cidr4 is not None and int(cidr4) > 32) or (cidr6 is not None and int(cidr6) > 128):
        raise SpfPermError("CIDR length out of range")
    domain: MacroString | None = None
    if spec:
        if not spec.startswith(":") or len(spec) < 2:
            raise SpfPermError(f"invalid {mechanism} argument")
        domain = _domain_spec(spec[1:])
    return Directive(qualifier, mechanism, domain=domain, cidr4=_cidr(cidr4, 32),
                     cidr6=_cidr(cidr6, 128))


def valid_domain(domain: str) -> bool:
    """A multi-label domain name of legal length (RFC 7208 §4.3)."""
    name = domain.rstrip(".")
    if not name or len(name) > 253 or name.startswith("["):
        return False
    labels = name.split(".")
    return len(labels) >= 2 and all(0 < len(label) <= 63 for label in labels)


def _truncate(name: str) -> str:
    """§7.3: over 253 characters, drop labels from the left until it fits."""
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name


@dataclass
class _Evaluation:
    dns: DnsClient
    deadline: Deadline
    ip: IpAddress
    sender: str
    helo: str
    lookups: int = 0
    voids: int = 0
    validated: str | None = field(default=None)

    def count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_TERMS:
            raise SpfPermError(f"more than {MAX_DNS_TERMS} DNS lookups")

    def count_void(self, answer: Answer) -> None:
        if answer.void:
            self.voids += 1
            if self.voids > MAX_VOID_LOOKUPS:
                raise SpfPermError(f"more than {MAX_VOID_LOOKUPS} void lookups")

    # --- macros ---------------------------------------------------------------------------

    async def expand(self, spec: MacroString, domain: str) -> str:
        out: list[str] = []
        for part in spec:
            if isinstance(part, str):
                out.append(part)
                continue
            value = await self._macro_value(part.letter.lower(), domain)
            pieces = re.split("[" + re.escape(part.delimiters or ".") + "]", value)
            if part.reverse:
                pieces.reverse()
            if part.digits:
                pieces = pieces[-part.digits:]
            text = ".".join(pieces)
            if part.letter.isupper():
                text = urllib.parse.quote(text, safe="-._~")
            out.append(text)
        return _truncate("".join(out).rstrip("."))

    async def _macro_value(self, letter: str, domain: str) -> str:
        local, _, sender_domain = self.sender.rpartition("@")
        if letter == "s":
            return self.sender
        if letter == "l":
            return local or "postmaster"
        if letter == "o":
            return sender_domain
        if letter == "d":
            return domain
        if letter == "i":
            if self.ip.version == 4:
                return str(self.ip)
            return ".".join(self.ip.exploded.replace(":", ""))
        if letter == "v":
            return "in-addr" if self.ip.version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "p":
            return await self._validated_name(domain)
        return ""  # c, r, t: explanation only, never expanded here

    async def _validated_name(self, domain: str) -> str:
        """§7.3 ``p``: a PTR name of the client whose address leads back to it (the one
        under ``domain`` if any), or ``unknown``."""
        if self.validated is None:
            names = await self._validated_names()
            target = domain.lower()
            chosen = next((n for n in names if n == target or n.endswith("." + target)),
                          names[0] if names else "unknown")
            self.validated = chosen
        return self.validated

    async def _validated_names(self) -> list[str]:
        try:
            pointers = await self.dns.pointers(self.ip, self.deadline)
        except DnsTempError:
            return []
        names: list[str] = []
        for record in pointers.records[:MAX_PTR_NAMES]:
            name = record.target.to_text().rstrip(".").lower()
            try:
                answer = await self.dns.addresses(name, self.ip.version, self.deadline)
            except DnsTempError:
                continue
            if any(ipaddress.ip_address(a.to_text()) == self.ip for a in answer.records):
                names.append(name)
        return names

    # --- evaluation -----------------------------------------------------------------------

    async def check(self, domain: str) -> SpfResult:
        """The result for ``domain``'s record: pass/fail/softfail/neutral; raises
        :class:`_NoRecord`, :class:`SpfPermError` or :class:`DnsTempError`."""
        records, _exists = await self.dns.txt(domain, self.deadline)
        spf = [r for r in records if r.lower() == b"v=spf1" or r[:7].lower() == b"v=spf1 "]
        if not spf:
            raise _NoRecord(domain)
        if len(spf) > 1:
            raise SpfPermError(f"{domain} publishes {len(spf)} SPF records")
        try:
            text = spf[0].decode("ascii")
        except UnicodeDecodeError:
            raise SpfPermError("non-ASCII SPF record") from None
        record = parse_record(text)
        for directive in record.directives:
            if await self._matches(directive, domain):
                return _QUALIFIERS[directive.qualifier]
        if record.redirect is not None:
            self.count_lookup()
            target = await self.expand(record.redirect, domain)
            try:
                return await self.check(target)
            except _NoRecord:
                raise SpfPermError(f"redirect to {target}, which has no record") from None
        return "neutral"

    async def _matches(self, directive: Directive, domain: str) -> bool:
        mechanism = directive.mechanism
        if mechanism == "all":
            return True
        if mechanism in ("ip4", "ip6"):
            network = directive.network
            return (network is not None and network.version == self.ip.version
                    and self.ip in network)
        self.count_lookup()
        target = (await self.expand(directive.domain, domain)
                  if directive.domain is not None else domain)
        if mechanism == "include":
            try:
                result = await self.check(target)
            except _NoRecord:
                raise SpfPermError(f"include of {target}, which has no record") from None
            return result == "pass"
        if mechanism == "exists":
            answer = await self.dns.query(target, "A", self.deadline)
            self.count_void(answer)
            return bool(answer.records)
        if mechanism == "a":
            answer = await self.dns.addresses(target, self.ip.version, self.deadline)
            self.count_void(answer)
            return self._in_any(answer, directive)
        if mechanism == "mx":
            return await self._mx_matches(target, directive)
        return await self._ptr_matches(target)

    def _in_any(self, answer: Answer, directive: Directive) -> bool:
        bits = directive.cidr4 if self.ip.version == 4 else directive.cidr6
        for record in answer.records:
            network = ipaddress.ip_network(f"{record.to_text()}/{bits}", strict=False)
            if self.ip in network:
                return True
        return False

    async def _mx_matches(self, target: str, directive: Directive) -> bool:
        answer = await self.dns.query(target, "MX", self.deadline)
        self.count_void(answer)
        exchanges = [r.exchange.to_text().rstrip(".") for r in answer.records]
        if len(exchanges) > MAX_MX_NAMES:
            raise SpfPermError(f"{target} has more than {MAX_MX_NAMES} MX names")
        for exchange in exchanges:
            if not exchange:  # a null MX ("0 .")
                continue
            addresses = await self.dns.addresses(exchange, self.ip.version, self.deadline)
            if self._in_any(addresses, directive):
                return True
        return False

    async def _ptr_matches(self, target: str) -> bool:
        """§5.5: a DNS error on the PTR lookup is no match, never an error."""
        wanted = target.lower()
        for name in await self._validated_names():
            if name == wanted or name.endswith("." + wanted):
                return True
        return False


def client_ip(peer_ip: str) -> IpAddress | None:
    """The connecting address, an IPv4-mapped IPv6 address as IPv4 (§5)."""
    try:
        ip = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


async def check_host(dns: DnsClient, deadline: Deadline, *, peer_ip: str, mail_from: str,
                     helo: str) -> SpfOutcome:
    """RFC 7208 for the MAIL FROM identity, or the HELO identity for the null sender
    (§2.4: ``postmaster@<helo>``)."""
    sender = mail_from.strip().strip("<>")
    domain = sender.rpartition("@")[2] if sender else helo
    if not sender:
        sender = f"postmaster@{helo}"
    elif "@" not in sender:
        sender = f"postmaster@{sender}"
    domain = domain.lower().rstrip(".")
    ip = client_ip(peer_ip)
    if ip is None or not valid_domain(domain):
        return SpfOutcome("none", domain, "no checkable domain")
    evaluation = _Evaluation(dns, deadline, ip, sender, helo)
    try:
        return SpfOutcome(await evaluation.check(domain), domain)
    except _NoRecord:
        return SpfOutcome("none", domain, "no SPF record")
    except SpfPermError as exc:
        return SpfOutcome("permerror", domain, str(exc))
    except DnsTempError as exc:
        return SpfOutcome("temperror", domain, str(exc))
