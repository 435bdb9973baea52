"""The DNS lookups of sender authentication: one resolver, a cache, one deadline.

Every check of a message shares one :class:`Deadline` (``[authentication]
time_budget_seconds``): a lookup gets what is left of it as its lifetime, and a lookup that
cannot answer in time — a timeout, SERVFAIL, no nameserver — raises :class:`DnsTempError`,
which the checks report as ``temperror`` (RFC 7208 §2.6.6, RFC 8601 §2.7.1).  Nothing here
ever defers a message.

Answers are kept in an in-process LRU cache for their TTL (a name that does not exist,
or has no record of the type, for :data:`NEGATIVE_TTL_SECONDS`), as any MX's caching
resolver would: a sender's SPF, DKIM key and DMARC records are asked once per TTL, not
once per message — and a hit costs a dict lookup, not a trip through the resolver's
machinery (which, measured, cost more per message than the checks themselves).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

log = logging.getLogger(__name__)

#: Answers (positive and negative) the cache keeps per process.
CACHE_ENTRIES = 20_000
#: How long "no such name" / "no such record" is remembered (RFC 2308 would take the
#: zone's SOA minimum; a minute bounds how long a newly published record goes unseen).
NEGATIVE_TTL_SECONDS = 60.0
#: Seconds one try waits for a server before dnspython asks again (within the lifetime).
TRY_TIMEOUT_SECONDS = 2.0


class DnsTempError(Exception):
    """No answer in time (timeout, SERVFAIL, no nameserver): the check is ``temperror``."""


class Deadline:
    """The one time budget of a message's checks, on the event loop's clock."""

    def __init__(self, seconds: float) -> None:
        self.at = asyncio.get_running_loop().time() + seconds

    def remaining(self) -> float:
        return self.at - asyncio.get_running_loop().time()


@dataclass(frozen=True, slots=True)
class Answer:
    """The records of one lookup; ``exists`` is False for NXDOMAIN (or a name that cannot
    exist).  No records at all is a "void lookup" (RFC 7208 §4.6.4)."""

    records: tuple[Any, ...]
    exists: bool = True

    @property
    def void(self) -> bool:
        return not self.records


_NOT_A_NAME = (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong,
               dns.name.BadEscape, dns.exception.SyntaxError, UnicodeError)


def make_resolver(nameserver: tuple[str, int] | None) -> dns.asyncresolver.Resolver | None:
    """A caching resolver asking ``(host, port)``, or the system's (``/etc/resolv.conf``);
    None when the system has no resolver configuration (logged once)."""
    if nameserver is not None:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [nameserver[0]]
        resolver.port = nameserver[1]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.exception.DNSException as exc:
            log.warning("sender authentication has no DNS resolver (%s): every check "
                        "will be temperror", exc)
            return None
    resolver.timeout = TRY_TIMEOUT_SECONDS
    return resolver


class DnsClient:
    """Lookups for the checks, each bounded by the message's :class:`Deadline`."""

    def __init__(self, resolver: dns.asyncresolver.Resolver | None) -> None:
        self._resolver = resolver
        self._cache: OrderedDict[tuple[str, str], tuple[float, Answer]] = OrderedDict()

    def cached(self, name: str, rdtype: str) -> bool:
        """Whether :meth:`query` would answer from the cache (so without waiting)."""
        entry = self._cache.get((name.lower().rstrip("."), rdtype))
        return entry is not None and entry[0] > time.monotonic()

    async def query(self, name: str, rdtype: str, deadline: Deadline) -> Answer:
        """The ``rdtype`` records of ``name``; raises :class:`DnsTempError`."""
        key = (name.lower().rstrip("."), rdtype)
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > time.monotonic():
                self._cache.move_to_end(key)
                return cached[1]
            del self._cache[key]
        answer, ttl = await self._resolve(name, rdtype, deadline)
        if ttl > 0:
            self._cache[key] = (time.monotonic() + ttl, answer)
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return answer

    async def _resolve(self, name: str, rdtype: str,
                       deadline: Deadline) -> tuple[Answer, float]:
        """An answer and how long it may be kept."""
        resolver = self._resolver
        if resolver is None:
            raise DnsTempError("no DNS resolver")
        remaining = deadline.remaining()
        if remaining <= 0:
            raise DnsTempError("time budget spent")
        try:
            qname = dns.name.from_text(name)
        except _NOT_A_NAME:
            return Answer((), exists=False), NEGATIVE_TTL_SECONDS
        try:
            answer = await resolver.resolve(qname, rdtype, lifetime=remaining, search=False,
                                            raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return Answer((), exists=False), NEGATIVE_TTL_SECONDS
        except _NOT_A_NAME:
            return Answer((), exists=False), NEGATIVE_TTL_SECONDS
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"{name}/{rdtype}: {type(exc).__name__}") from None
        if answer.rrset is None:
            return Answer(()), NEGATIVE_TTL_SECONDS
        return Answer(tuple(answer.rrset)), float(answer.rrset.ttl)

    async def txt(self, name: str, deadline: Deadline) -> tuple[list[bytes], bool]:
        """Each TXT record of ``name`` with its strings joined (RFC 7208 §3.3, RFC 6376
        §3.6.2.2), and whether the name exists."""
        answer = await self.query(name, "TXT", deadline)
        return [b"".join(record.strings) for record in answer.records], answer.exists

    async def addresses(self, name: str, version: int, deadline: Deadline) -> Answer:
        """A (``version`` 4) or AAAA (6) records of ``name``."""
        return await self.query(name, "A" if version == 4 else "AAAA", deadline)

    async def pointers(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                       deadline: Deadline) -> Answer:
        """PTR records of ``ip`` (its ``in-addr.arpa`` / ``ip6.arpa`` name)."""
        return await self.query(ip.reverse_pointer, "PTR", deadline)
