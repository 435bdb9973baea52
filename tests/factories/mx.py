"""MX fixtures: a migrated database, hosted addresses made with SQLAlchemy, a PolicyCache
and a real MX listener on a free port (engines from the real factory: builtin EICAR/GTUBE).
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.filters.engines.base import SpamEngine, VirusEngine
from mailplane.filters.engines.factory import build_spam_engine, build_virus_engine
from mailplane.mailstore.paths import mailbox_dir
from mailplane.node.policy_cache import PolicyCache
from mailplane.smtp.mx import MxServer, start_mx
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import Address, Contract, ListEntry, PolicyRevision
from tests.factories.addresses import add_address
from tests.factories.messages import EICAR, GTUBE, message

__all__ = ["EICAR", "GTUBE", "make_message"]

#: The MX tests' message: from alice@sender.example to taro_1@e06.example.net.
make_message = message

@dataclass
class MxEnv:
    settings: Settings
    session_factory: sessionmaker[Session]
    cache: PolicyCache
    clock: FrozenClock
    server: MxServer | None = None
    contract_id: int = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def add_address(
        self,
        address: str,
        *,
        lists: dict[str, list[str]] | None = None,
        **fields: Any,
    ) -> str:
        """Insert a hosted address row (and list entries), then reload the policy cache."""
        add_address(self.session_factory, address, contract_id=self.contract_id, lists=lists,
                    **fields)
        self.cache.load_now()
        return address

    def update_address(self, address: str, **fields: Any) -> None:
        with self.session_factory() as session:
            session.execute(update(Address).where(Address.address == address).values(**fields))
            session.commit()
        self.cache.load_now()

    def set_list(self, address: str, kind: str, values: list[str]) -> None:
        with self.session_factory() as session:
            row = session.query(Address).filter_by(address=address).one()
            session.execute(delete(ListEntry).where(ListEntry.address_id == row.id,
                                                    ListEntry.kind == kind))
            for position, value in enumerate(values):
                session.add(ListEntry(address_id=row.id, kind=kind, value=value,
                                      position=position))
            session.commit()
        self.cache.load_now()

    def inbox(self, address: str) -> list[bytes]:
        new = mailbox_dir(self.settings.maildir_root, address) / "new"
        if not new.is_dir():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir())]

    def tmp_files(self, address: str) -> list[Path]:
        tmp = mailbox_dir(self.settings.maildir_root, address) / "tmp"
        return list(tmp.iterdir()) if tmp.is_dir() else []

    def quarantine_files(self, address: str) -> list[bytes]:
        """The messages of the address's quarantine, its 迷惑メール folder (SPEC §9b)."""
        from mailplane.delivery.quarantine import quarantine_dir

        folder = quarantine_dir(self.settings, address)
        return [p.read_bytes() for sub in ("new", "cur") if (folder / sub).is_dir()
                for p in sorted((folder / sub).iterdir())]

    async def send(
        self, message: bytes, *, mail_from: str = "alice@sender.example",
        rcpt_tos: list[str] | tuple[str, ...] = ("taro_1@e06.example.net",),
    ) -> dict[str, tuple[int, bytes]]:
        """Send over a real SMTP socket; returns smtplib's refused recipients."""

        def run() -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                client.ehlo("client.sender.example")
                return client.sendmail(mail_from, list(rcpt_tos), message)

        return await asyncio.to_thread(run)

    async def send_expect_error(
        self, message: bytes, *, mail_from: str = "alice@sender.example",
        rcpt_tos: list[str] | tuple[str, ...] = ("taro_1@e06.example.net",),
    ) -> tuple[int, str]:
        """Send and return the (code, text) of the DATA reply that refused it."""

        def run() -> tuple[int, str]:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
                client.ehlo("client.sender.example")
                try:
                    client.sendmail(mail_from, list(rcpt_tos), message)
                except smtplib.SMTPDataError as exc:
                    return exc.smtp_code, exc.smtp_error.decode()
                except smtplib.SMTPRecipientsRefused as exc:
                    code, text = next(iter(exc.recipients.values()))
                    return code, text.decode()
                except smtplib.SMTPSenderRefused as exc:
                    return exc.smtp_code, exc.smtp_error.decode()
            return 250, "accepted"

        return await asyncio.to_thread(run)

    async def raw_session(self, payload: bytes) -> list[str]:
        """Write raw bytes on a socket and collect reply lines until QUIT's 221 (or close)."""

        def run() -> list[str]:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(payload)
                received = b""
                while b"\r\n221 " not in received:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    received += chunk
            return received.decode("utf-8", "replace").splitlines()

        return await asyncio.to_thread(run)


EngineFactory = Callable[[Settings], tuple[VirusEngine | None, SpamEngine | None]]


@pytest.fixture
def mx_settings_overrides() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change MX settings."""
    return {}


@pytest.fixture
def engines() -> EngineFactory:
    """The real configured engines (builtin EICAR/GTUBE by default)."""

    def build(settings: Settings) -> tuple[VirusEngine | None, SpamEngine | None]:
        return build_virus_engine(settings.virus), build_spam_engine(settings.spam)

    return build


@pytest.fixture
async def mx(
    make_settings: Callable[..., Settings],
    mx_settings_overrides: dict[str, Any],
    engines: EngineFactory,
) -> AsyncIterator[MxEnv]:
    overrides: dict[str, Any] = {"mx": {"port": 0, "hostname": "mx.example.net"}}
    for key, value in mx_settings_overrides.items():
        if isinstance(value, dict) and isinstance(overrides.get(key), dict):
            overrides[key] = {**overrides[key], **value}
        else:
            overrides[key] = value
    settings = make_settings(**overrides)
    await asyncio.to_thread(upgrade, settings.database_url)
    db_engine = make_engine(settings.database_url)
    session_factory = make_session_factory(db_engine)
    clock = FrozenClock()
    with session_factory() as session:
        contract = Contract(customer_number="C0001", contact_email="owner@example.com",
                            included_addresses=5, created_at=clock.now())
        session.add(contract)
        if session.get(PolicyRevision, 1) is None:
            session.add(PolicyRevision(id=1, revision=1))
        session.commit()
        contract_id = contract.id
    cache = PolicyCache(session_factory, base_domains=tuple(settings.base_domains),
                        refresh_seconds=settings.mx.policy_refresh_seconds, clock=clock)
    env = MxEnv(settings, session_factory, cache, clock, contract_id=contract_id)
    env.add_address("taro_1@e06.example.net")
    virus_engine, spam_engine = engines(settings)
    env.server = await start_mx(settings, session_factory, cache, clock,
                                virus_engine=virus_engine, spam_engine=spam_engine)
    try:
        yield env
    finally:
        await env.server.aclose()
        for engine in (virus_engine, spam_engine):
            if engine is not None:
                await engine.aclose()
        db_engine.dispose()
