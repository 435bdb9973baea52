"""Two ``mailplane serve`` processes as one cluster (issue 9).

Both nodes share ONE throwaway PostgreSQL database and ONE state directory — the Maildir
volume (``state/mail``), the quarantine tree and the outbound spool — as production nodes
share one mounted volume (docs/operations.md "Shared volume or per-node routing").  Their
outbound workers resolve through a DNS stub and deliver to a capture MX, both running in the
test process and reached through the ``[outbound] dns_nameserver`` / ``mx_port`` settings.

The cluster is started once per module (starting a node costs seconds); every test uses
its own contract, addresses and remote domains, so the tests do not depend on each other.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from mailplane.storage.db import make_engine, make_session_factory
from tests.conftest import PG_ADMIN_URL, free_port
from tests.factories.dns import DnsStub
from tests.factories.node import Node, build_node, close_node

CAPTURE_HOST = "127.0.0.2"
#: Remote domains whose MX is the capture server.
REMOTE_DOMAINS = ("dest.test", "sender-a.test", "sender-b.test", "sender-c.test")


# --- capture MX --------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    helo: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


@dataclass
class RecordingHandler:
    """Records every accepted message with the EHLO name (= the sending node's hostname).

    ``delay_seconds`` slows each DATA a little so one worker cannot drain a whole batch
    before the other node's worker polls: the point is contention, not speed."""

    deliveries: list[Delivery] = field(default_factory=list)
    delay_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        with self._lock:
            self.deliveries.append(Delivery(
                helo=str(session.host_name or ""),
                mail_from=(envelope.mail_from or "").strip("<>"),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=content,
            ))
        return "250 2.0.0 queued"

    def to(self, recipient: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if recipient in d.rcpt_tos]


# --- the cluster -------------------------------------------------------------------------


@dataclass
class Cluster:
    a: Node
    b: Node
    database_url: str
    state_dir: Path
    capture: RecordingHandler
    engine: Engine
    session_factory: sessionmaker[Session]
    admin: Engine

    @property
    def nodes(self) -> tuple[Node, Node]:
        return (self.a, self.b)

    def new_contract(self, node: Node) -> str:
        number = f"C{uuid.uuid4().hex[:8].upper()}"
        response = node.api().post("/v1/contracts", json={
            "customer_number": number, "contact_email": "owner@contact.example.jp"})
        assert response.status_code == 201, response.text
        return number

    def new_address(self, node: Node, contract: str, local_part: str) -> dict[str, Any]:
        response = node.api().post(f"/v1/contracts/{contract}/addresses", json={
            "local_part": local_part, "subdomain": "e06", "accept_terms": True})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


def rcpt_code(node: Node, address: str, sender: str = "probe@sender-a.test") -> int:
    """The node's RCPT TO answer for ``address`` (no message is sent)."""
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10) as smtp:
        smtp.ehlo("probe.test")
        smtp.mail(sender)
        code, _text = smtp.rcpt(address)
        smtp.rset()
    return code


def wait_until(predicate: Callable[[], bool], seconds: float) -> bool:
    """Poll ``predicate`` until it holds or ``seconds`` pass (a deadline, not a timing)."""
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _create_database(admin: Engine) -> str:
    name = f"mailplane_cluster_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return name


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        db_name = _create_database(admin)
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server answers at {PG_ADMIN_URL}: {exc.orig}")
    database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
    base = tmp_path_factory.mktemp("cluster")
    shared_state = base / "shared-state"
    capture_port = free_port()
    zone: dict[str, dict[str, list[Any]]] = {}
    for domain in REMOTE_DOMAINS:
        zone[domain] = {"MX": [(10, f"mx.{domain}")]}
        zone[f"mx.{domain}"] = {"A": [CAPTURE_HOST]}
    dns = DnsStub(zone)
    dns.start()
    handler = RecordingHandler()
    controller = Controller(handler, hostname=CAPTURE_HOST, port=capture_port,
                            ready_timeout=10)
    controller.start()
    nodes: list[Node] = []
    engine = make_engine(database_url)
    try:
        for name in ("node-a", "node-b"):
            node = build_node(
                base, database_url, name, shared_state,
                MAILPLANE_MX__HOSTNAME=f"{name}.mailplane.test",
                MAILPLANE_OUTBOUND__DNS_NAMESERVER=f"{dns.address[0]}:{dns.address[1]}",
                MAILPLANE_OUTBOUND__MX_PORT=capture_port,
                MAILPLANE_OUTBOUND__POLL_SECONDS="1.0",
                MAILPLANE_OUTBOUND__CONNECT_TIMEOUT_SECONDS="5",
                MAILPLANE_RETENTION__PURGE_INTERVAL_SECONDS="2",
            )
            nodes.append(node)
        for node in nodes:
            node.start()
        yield Cluster(nodes[0], nodes[1], database_url, shared_state, handler, engine,
                      make_session_factory(engine), admin)
    finally:
        for node in nodes:
            close_node(node)
        engine.dispose()
        controller.stop()
        dns.close()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
