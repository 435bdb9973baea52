"""DKIM fixtures (SPEC §8b): a migrated database on SQLite or PostgreSQL with selectors made
through the same functions as ``mailplane dkim``, and their public keys as DNS records for
a loopback DNS stub, taken from ``mailplane dns-records``' own output.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.node.dns_records import dns_records_text
from mailplane.signing import selectors
from mailplane.signing.keys import ALGORITHMS, Algorithm
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from tests.conftest import SettingsFactory
from tests.factories.dns import DnsStub


@dataclass
class SigningEnv:
    settings: Settings
    factory: sessionmaker[Session]
    clock: FrozenClock

    def selectors(self, *, prefix: str | None = None,
                  algorithms: tuple[Algorithm, ...] = ALGORITHMS) -> list[str]:
        """New selectors, published and active (no DNS check), named ``<prefix>-<alg>``
        (unique by default: rspamd and dkimpy must never see a name reused with another
        key within a run)."""
        prefix = prefix or f"t{uuid.uuid4().hex[:8]}"
        names = []
        for algorithm in algorithms:
            name = f"{prefix}-{algorithm}"
            selectors.generate_selectors(self.settings, self.factory, algorithms=[algorithm],
                                         now=self.clock.now(), name=name)
            selectors.publish(self.factory, selector=name, now=self.clock.now())
            selectors.activate(self.settings, self.factory, selector=name,
                               now=self.clock.now(), lookup=None)
            names.append(name)
        return names

    def zone_text(self) -> str:
        return dns_records_text(self.settings, self.factory, now=self.clock.now())


def txt_records(zone_text: str) -> dict[str, list[str]]:
    """The TXT records of ``mailplane dns-records`` output, parsed by dnspython's zone
    parser: ``{name without the final dot: [joined text, ...]}``."""
    zone = dns.zone.from_text(zone_text, origin=dns.name.root, relativize=False,
                              check_origin=False)
    records: dict[str, list[str]] = {}
    for name, node in zone.nodes.items():
        rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)
        if rdataset is not None:
            records[name.to_text().rstrip(".").lower()] = [
                b"".join(rdata.strings).decode() for rdata in rdataset]
    return records


def publish(stub: DnsStub, records: dict[str, list[str]]) -> None:
    """Serve ``records`` (TXT) from ``stub``, next to what it already serves."""
    for name, texts in records.items():
        stub.zone.setdefault(name, {})["TXT"] = list(texts)


@pytest.fixture(params=["sqlite", "postgresql"])
def signing_env(request: pytest.FixtureRequest,
                make_settings: SettingsFactory) -> Iterator[SigningEnv]:
    overrides: dict[str, Any] = {"mx": {"hostname": "mx.example.net"}}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    settings = make_settings(**overrides)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        yield SigningEnv(settings, make_session_factory(engine), FrozenClock())
    finally:
        engine.dispose()
