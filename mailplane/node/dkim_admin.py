"""``mailplane dkim generate|publish|activate|retire|list`` and ``mailplane dns-records``
(SPEC §8b): the operator's side of :mod:`mailplane.signing.selectors`, and the demo keys
``seed-demo`` makes so that ``make run`` signs offline.  Each command returns the text to
print; a refused change raises ``SystemExit`` with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dns.exception
import dns.resolver
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock, SystemClock
from mailplane.config.settings import Settings
from mailplane.node.dns_records import (
    TTL_SECONDS,
    dkim_records,
    dns_records_text,
    format_record,
)
from mailplane.signing import selectors
from mailplane.signing.keys import ALGORITHMS, Algorithm, check_algorithm
from mailplane.storage import dkim_repo
from mailplane.storage.db import make_engine, make_session_factory

#: A DNS check that does not answer in this time reports the name as not found.
DNS_CHECK_TIMEOUT_SECONDS = 5.0


@contextmanager
def _factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused change ends the command with its reason (exit status 1)."""
    try:
        yield
    except selectors.SelectorError as exc:
        raise SystemExit(f"mailplane: {exc}") from None


def generate_cli(settings: Settings, *, algorithm: str, selector: str | None,
                 clock: Clock | None = None) -> str:
    algorithms: Sequence[Algorithm] = (ALGORITHMS if algorithm == "both"
                                       else (check_algorithm(algorithm),))
    now = (clock or SystemClock()).now()
    with _factory(settings) as factory, _refusals():
        made = selectors.generate_selectors(settings, factory, algorithms=algorithms,
                                            now=now, name=selector)
    lines = [f"generated {item.algorithm} selector {item.selector} (private key "
             f"{item.key_file}, mode 600)" for item in made]
    names = " ".join(item.selector for item in made)
    lines.append(f"next: mailplane dkim publish {names}")
    return "\n".join(lines)


def publish_cli(settings: Settings, *, names: Sequence[str], clock: Clock | None = None) -> str:
    now = (clock or SystemClock()).now()
    rows = []
    with _factory(settings) as factory, _refusals():
        for name in names:
            rows.append(selectors.publish(factory, selector=name, now=now))
    records = dkim_records(settings.base_domains, rows)
    text = "\n".join(format_record(record) for record in records)
    return (f"; add to the zone of every base domain, then, once DNS answers: "
            f"mailplane dkim activate {' '.join(names)}\n$TTL {TTL_SECONDS}\n{text}\n")


def txt_lookup(settings: Settings) -> selectors.TxtLookup:
    """TXT lookups through ``[outbound] dns_nameserver`` (or the system resolver), as
    the receivers of our mail would see the record."""
    resolver = dns.resolver.Resolver(configure=settings.outbound.nameserver() is None)
    nameserver = settings.outbound.nameserver()
    if nameserver is not None:
        resolver.nameservers = [nameserver[0]]
        resolver.port = nameserver[1]
    resolver.lifetime = DNS_CHECK_TIMEOUT_SECONDS

    def lookup(name: str) -> list[str]:
        try:
            answer = resolver.resolve(name, "TXT")
        except dns.resolver.NXDOMAIN:
            raise LookupError("no such name in DNS") from None
        except dns.resolver.NoAnswer:
            raise LookupError("no TXT record") from None
        except dns.exception.DNSException as exc:
            raise LookupError(f"DNS lookup failed: {type(exc).__name__}") from None
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]

    return lookup


def activate_cli(settings: Settings, *, names: Sequence[str], check_dns: bool = True,
                 clock: Clock | None = None) -> str:
    now = (clock or SystemClock()).now()
    lookup = txt_lookup(settings) if check_dns else None
    lines = []
    with _factory(settings) as factory, _refusals():
        for name in names:
            previous = selectors.activate(settings, factory, selector=name, now=now,
                                          lookup=lookup)
            line = f"{name} signs now (every node within {settings.dkim.refresh_seconds:g} s)"
            if previous is not None:
                line += (f"; {previous.selector} stays in DNS for mail it signed: "
                         f"mailplane dkim retire {previous.selector} in a few days")
            lines.append(line)
    return "\n".join(lines)


def retire_cli(settings: Settings, *, names: Sequence[str], force: bool = False,
               clock: Clock | None = None) -> str:
    now = (clock or SystemClock()).now()
    lines = []
    with _factory(settings) as factory, _refusals():
        for name in names:
            deleted = selectors.retire(settings, factory, selector=name, now=now,
                                       force=force)
            lines.append(f"{name} retired: remove {name}._domainkey records from DNS"
                         + ("; private key deleted" if deleted else ""))
    return "\n".join(lines)


def list_cli(settings: Settings) -> str:
    with _factory(settings) as factory:
        rows = selectors.listing(settings, factory)
    if not rows:
        return "no DKIM selector yet: mailplane dkim generate"
    lines = [f"{'selector':<24} {'algorithm':<9} {'state':<10} {'created':<17} key file"]
    for row, present in rows:
        lines.append(f"{row.selector:<24} {row.algorithm:<9} {row.state:<10} "
                     f"{row.created_at:%Y-%m-%d %H:%M} "
                     f"{'present' if present else 'MISSING on this node'}")
    return "\n".join(lines)


def dns_records_cli(settings: Settings, *, domains: Sequence[str] | None = None,
                    clock: Clock | None = None) -> str:
    unknown = [d for d in domains or () if d not in settings.base_domains]
    if unknown:
        raise SystemExit(f"mailplane: not a base domain: {', '.join(unknown)}")
    with _factory(settings) as factory:
        return dns_records_text(settings, factory, now=(clock or SystemClock()).now(),
                                domains=domains)


def ensure_demo_selectors(settings: Settings, factory: sessionmaker[Session],
                          clock: Clock) -> list[str]:
    """``seed-demo``: one active Ed25519 and RSA selector if none is active, so the
    offline demo signs what it sends (no DNS to check against); returns their names."""
    with factory() as session:
        active = {row.algorithm for row in dkim_repo.active(session)}
    missing = [algorithm for algorithm in ALGORITHMS if algorithm not in active]
    if not missing:
        return []
    now = clock.now()
    made = selectors.generate_selectors(settings, factory, algorithms=missing, now=now)
    for item in made:
        selectors.publish(factory, selector=item.selector, now=now)
        selectors.activate(settings, factory, selector=item.selector, now=now, lookup=None)
    return [item.selector for item in made]
