"""Where mail for a domain goes (RFC 5321 §5.1, RFC 7505), looked up with dns.asyncresolver.

- MX records, lowest preference first (equal preferences keep the resolver's order, which
  already rotates them);
- no MX records (NOERROR, empty answer) → the domain itself is the implicit MX (A/AAAA);
- a null MX (single record ``0 .``) → the domain accepts no mail: a permanent failure;
- NXDOMAIN → permanent (no such domain); timeouts and SERVFAIL → temporary (retry later).

:func:`mx_addresses` stops after ``limit`` addresses, and after looking up ``limit`` hosts
(Postfix's ``smtp_mx_address_limit``): a domain listing many MX hosts that never answer
costs a bounded number of lookups and connections, never one per host.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver


class RouteError(Exception):
    """No route now.  ``permanent`` decides bounce (True) or retry (False)."""

    def __init__(self, message: str, *, permanent: bool, status: str) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str
    preference: int


@dataclass(frozen=True, slots=True)
class MxAddress:
    host: str
    address: str


#: Seconds per query to one server before dnspython asks again (the C resolver's 5 s).
QUERY_TIMEOUT = 5.0
#: Names (with their record type) whose answers the worker's resolver keeps.
CACHE_ENTRIES = 4096


def make_resolver(
    nameserver: tuple[str, int] | None = None, *, timeout: float = 10.0
) -> dns.asyncresolver.Resolver:
    """The system resolver, or one pointed at ``nameserver`` (tests' DNS stub); each
    lookup ends within ``timeout`` seconds, retries included."""
    if nameserver is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [nameserver[0]]
        resolver.port = nameserver[1]
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, QUERY_TIMEOUT)
    # Answers (negative ones too) kept for their TTL: concurrent jobs to one domain ask
    # once, as Postfix does behind the host's caching resolver.
    resolver.cache = dns.resolver.LRUCache(CACHE_ENTRIES)
    return resolver


async def mx_hosts(resolver: dns.asyncresolver.Resolver, domain: str) -> list[MxHost]:
    try:
        answer = await resolver.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN:
        raise RouteError(
            f"domain {domain} does not exist", permanent=True, status="5.1.2"
        ) from None
    except dns.resolver.NoAnswer:
        return [MxHost(domain, 0)]  # RFC 5321 §5.1 implicit MX
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise RouteError(
            f"MX lookup for {domain} failed: {exc}", permanent=False, status="4.4.3"
        ) from None
    records = [(int(r.preference), r.exchange.to_text().rstrip(".")) for r in answer]
    hosts = [MxHost(name, pref) for pref, name in records if name]
    if not hosts:  # only "0 ." records: RFC 7505 null MX
        raise RouteError(
            f"domain {domain} accepts no mail (null MX)", permanent=True, status="5.1.10"
        )
    return sorted(hosts, key=lambda host: host.preference)


async def host_addresses(resolver: dns.asyncresolver.Resolver, host: str) -> list[str]:
    """IPv4 then IPv6 addresses of one MX host, both asked at once; [] when it has none
    (try the next host)."""
    answers = await asyncio.gather(*(_addresses(resolver, host, rdtype)
                                     for rdtype in ("A", "AAAA")))
    return [address for answer in answers for address in answer]


async def _addresses(resolver: dns.asyncresolver.Resolver, host: str,
                     rdtype: str) -> list[str]:
    try:
        answer = await resolver.resolve(host, rdtype)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.exception.Timeout,
            dns.resolver.NoNameservers):
        return []
    return [r.to_text() for r in answer]


async def mx_addresses(resolver: dns.asyncresolver.Resolver, domain: str, *,
                       limit: int) -> list[MxAddress]:
    """Where to try mail for ``domain``, in order: at most ``limit`` addresses, from at
    most ``limit`` MX hosts.  :class:`RouteError` when the domain itself has no route;
    [] when its hosts have no address."""
    found: list[MxAddress] = []
    for host in (await mx_hosts(resolver, domain))[:limit]:
        found.extend(MxAddress(host.name, address)
                     for address in await host_addresses(resolver, host.name))
        if len(found) >= limit:
            break
    return found[:limit]
