"""Inbound MX + outbound worker together: forwards, auto-replies and SRS bounces travel
from a real SMTP delivery through the queue to capture MX servers found via a DNS stub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete

from mailplane.outbound.local_transport import LocalTransport
from mailplane.outbound.worker import OutboundWorker
from mailplane.storage.models import AutoReply, ForwardDestination
from tests.factories.mx import MxEnv
from tests.factories.outbound import SRS_DOMAIN, SRS_SECRET, CaptureFactory, CaptureMx, DnsStub

#: MX settings of the flow tests: a known SRS secret and domain, short timeouts.  A test
#: module using ``flow`` narrows the ``mx`` fixture with them (``mx_settings_overrides``).
FLOW_MX_SETTINGS: dict[str, Any] = {"srs": {"secret": SRS_SECRET, "domain": SRS_DOMAIN},
                                    "outbound": {"connect_timeout_seconds": 5.0}}


#: The SPF policy of a sender domain in :func:`senders_authenticated`: the tests' SMTP
#: clients connect from 127.0.0.1.
LOOPBACK_SPF = "v=spf1 ip4:127.0.0.1 -all"


def senders_authenticated(dns_stub: DnsStub, *domains: str) -> dict[str, Any]:
    """``[authentication]`` for a flow test whose Internet senders pass SPF at the MX:
    ``domains`` publish :data:`LOOPBACK_SPF` in the flow's DNS stub and the MX asks it.
    A forward records its SRS address, and a failed forward draws a DSN, only for a
    sender that authenticated (SPEC §5): with ``nameserver = "none"`` (the tests'
    default) nothing is verified, so no sender is."""
    for domain in domains:
        dns_stub.zone.setdefault(domain, {})["TXT"] = [LOOPBACK_SPF]
    return {"authentication": {"nameserver": f"{dns_stub.host}:{dns_stub.port}"}}


def flow_settings_on(request: pytest.FixtureRequest, **sections: Any) -> dict[str, Any]:
    """:data:`FLOW_MX_SETTINGS` (with ``sections`` merged in) on the database a test is
    parametrized for: ``"sqlite"`` (the default) or ``"postgresql"`` (a throwaway one).
    For a module's ``mx_settings_overrides`` fixture with ``params=["sqlite",
    "postgresql"]``."""
    overrides: dict[str, Any] = dict(FLOW_MX_SETTINGS)
    for name, values in sections.items():
        overrides[name] = {**overrides.get(name, {}), **values}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return overrides


@dataclass
class Flow:
    mx: MxEnv
    dns: DnsStub
    capture: CaptureFactory
    worker: OutboundWorker

    def remote(self, domain: str, host: str = "127.0.0.2") -> CaptureMx:
        """A remote domain whose MX is a capture server on ``host``."""
        self.dns.zone[f"mx.{domain}"] = {"A": [host]}
        self.dns.zone.setdefault(domain, {})["MX"] = [(10, f"mx.{domain}")]
        return self.capture(host)

    def set_forwarding(self, address: str, destinations: list[str], *, keep_copy: bool) -> None:
        with self.mx.session_factory() as session:
            row_id = self._id(session, address)
            session.execute(delete(ForwardDestination)
                            .where(ForwardDestination.address_id == row_id))
            for position, destination in enumerate(destinations):
                session.add(ForwardDestination(address_id=row_id, destination=destination,
                                               position=position))
            session.commit()
        self.mx.update_address(address, forward_keep_copy=keep_copy)

    def set_auto_reply(self, address: str, *, default_message: str,
                       special_senders: tuple[str, ...] = (),
                       special_message: str = "") -> None:
        with self.mx.session_factory() as session:
            row_id = self._id(session, address)
            session.execute(delete(AutoReply).where(AutoReply.address_id == row_id))
            session.add(AutoReply(address_id=row_id, enabled=True,
                                  special_senders=list(special_senders),
                                  special_message=special_message,
                                  default_message=default_message))
            session.commit()
        self.mx.cache.load_now()

    @staticmethod
    def _id(session: Any, address: str) -> int:
        from sqlalchemy import select

        from mailplane.storage.models import Address

        row_id = session.scalar(select(Address.id).where(Address.address == address))
        assert row_id is not None
        return int(row_id)

    async def drain(self) -> int:
        """Deliver everything due now; returns how many jobs were handled."""
        total = 0
        while (count := await self.worker.run_once()):
            total += count
        return total


@pytest.fixture
def flow(mx: MxEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
         mx_port: int) -> Flow:
    # As on a node: the worker delivers hosted recipients through the MX's LocalDelivery.
    assert mx.server is not None
    local = LocalTransport(mx.server.handler.delivery, mx.clock, mx.session_factory)
    worker = OutboundWorker(mx.settings, mx.session_factory, mx.clock, worker_id="w1",
                            dns_nameserver=dns_stub.address, smtp_port_override=mx_port,
                            local=local)
    return Flow(mx, dns_stub, capture_mx, worker)

