"""Does a mail domain exist?  Asked when a forwarding destination is saved (issue 20: a
forward to a domain that does not exist bounced, with the attacker's headers, to a forged
sender; SPEC §5).

A domain is *missing* when DNS says so with authority: NXDOMAIN for its MX and for its
A/AAAA (RFC 5321 §5.1: no MX falls back to the address records), or a null MX (RFC 7505:
the domain accepts no mail).  Anything else — an answer, a timeout, SERVFAIL, no
nameserver at all (an offline ``make run``) — is not proof, and the destination is
accepted: a check that cannot answer never blocks a customer.

Lookups are asynchronous (dnspython's asyncio resolver) with one total time budget for
all the domains of a request, so they never block an event loop nor take longer than
``forwarding.dns_timeout_seconds``.  Answers are cached for a few minutes per process
(what an API benchmark of one destination would otherwise pay per request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import dns.asyncresolver
import dns.resolver

log = logging.getLogger(__name__)

#: Seconds a domain's answer (existing or missing) is remembered.
CACHE_SECONDS = 300.0
#: Domains remembered at most (bounded memory).
CACHE_ENTRIES = 4096


class DomainLookup:
    def __init__(self, nameserver: tuple[str, int] | None, *, timeout: float) -> None:
        """``nameserver``: ``(host, port)`` of the one server to ask, or None for the
        system resolver."""
        self.timeout = timeout
        self._nameserver = nameserver
        self._cache: dict[str, tuple[float, bool]] = {}
        self._made: dns.asyncresolver.Resolver | None = None

    def _resolver(self) -> dns.asyncresolver.Resolver:
        """Made once (the system resolver reads ``/etc/resolv.conf``)."""
        if self._made is None:
            self._made = self._make_resolver()
        return self._made

    def _make_resolver(self) -> dns.asyncresolver.Resolver:
        if self._nameserver is None:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:  # no resolv.conf: offline
                resolver = dns.asyncresolver.Resolver(configure=False)
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [self._nameserver[0]]
            resolver.port = self._nameserver[1]
        resolver.lifetime = self.timeout
        resolver.timeout = self.timeout
        return resolver

    async def missing_domains(self, domains: Iterable[str]) -> set[str]:
        """The ``domains`` that DNS says do not exist (lower case); the others exist or
        could not be checked in time."""
        wanted = sorted({d.lower().rstrip(".") for d in domains if d})
        now = time.monotonic()
        answers: dict[str, bool] = {}
        unknown: list[str] = []
        for domain in wanted:
            cached = self._cache.get(domain)
            if cached is not None and now - cached[0] < CACHE_SECONDS:
                answers[domain] = cached[1]
            else:
                unknown.append(domain)
        if unknown:
            resolver = self._resolver()
            try:
                async with asyncio.timeout(self.timeout):
                    found = await asyncio.gather(*(self._missing(resolver, d)
                                                   for d in unknown))
            except TimeoutError:
                log.info("destination domain check: no answer within %.1f s for %s; "
                         "accepted", self.timeout, ", ".join(unknown))
                found = [None] * len(unknown)
            for domain, missing in zip(unknown, found, strict=True):
                if missing is None:
                    continue  # no proof either way: not cached, accepted
                answers[domain] = missing
                self._remember(domain, missing, now)
        return {domain for domain, missing in answers.items() if missing}

    def _remember(self, domain: str, missing: bool, now: float) -> None:
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache.clear()
        self._cache[domain] = (now, missing)

    async def _missing(self, resolver: dns.asyncresolver.Resolver, domain: str
                       ) -> bool | None:
        """True: missing; False: exists; None: DNS could not say."""
        mx = await _ask(resolver, domain, "MX")
        if mx is None:
            return None
        if mx == "nxdomain":
            addresses = await asyncio.gather(_ask(resolver, domain, "A"),
                                             _ask(resolver, domain, "AAAA"))
            if all(a == "nxdomain" for a in addresses):
                return True
            return None if None in addresses else False
        return mx == "null_mx"


async def _ask(resolver: dns.asyncresolver.Resolver, domain: str, rdtype: str) -> str | None:
    """``"nxdomain"``, ``"null_mx"``, ``"found"`` (records or an empty answer: the name
    exists), or None when DNS could not answer."""
    try:
        answer = await resolver.resolve(domain, rdtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return "nxdomain"
    except Exception as exc:  # timeouts, SERVFAIL, no nameserver, a name DNS cannot hold
        log.info("destination domain check of %s (%s): %s", domain, rdtype,
                 type(exc).__name__)
        return None
    if rdtype == "MX" and answer.rrset is not None:
        exchanges = [str(r.exchange) for r in answer.rrset]
        if exchanges and all(e in (".", "") for e in exchanges):
            return "null_mx"
    return "found"
