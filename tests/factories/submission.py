"""Submission fixtures: a migrated database with hosted addresses (real argon2 hashes at
test cost), the shared Authenticator/LoginGuard, the real builtin engines, and real
submission listeners on free ports.  Clients are the blocking ``smtplib`` run in a thread,
exactly as a mail client talks to the service.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator
from mailplane.auth.login_guard import LoginGuard
from mailplane.auth.passwords import PasswordHashing
from mailplane.clock import FrozenClock
from mailplane.config.sections import OverseasConfig
from mailplane.config.settings import Settings
from mailplane.filters.engines.base import SpamEngine, VirusEngine
from mailplane.filters.engines.factory import build_spam_engine, build_virus_engine
from mailplane.filters.geo import BundledCountryLookup, OverrideCountryLookup
from mailplane.mailstore.paths import mailbox_dir
from mailplane.net.tls import server_ssl_context
from mailplane.node.policy_cache import PolicyCache
from mailplane.smtp.submission_server import SubmissionServer, start_submission
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import Address, Contract, PolicyRevision
from tests.factories.addresses import add_address
from tests.factories.messages import DATE, EICAR, GTUBE, message

__all__ = ["EICAR", "GTUBE"]

PASSWORD = "Secret.pass1"
SENDER = "taro_1@e06.example.net"
NEIGHBOUR = "hanako@e07.example.net"


def make_message(*, sender: str = SENDER, to: str = NEIGHBOUR, subject: str = "Hello",
                 body: bytes = b"Hi there.\r\n", with_ids: bool = True) -> bytes:
    """A customer's message as its mail client sends it (Date and Message-ID optional)."""
    return message(sender=sender, sender_name="Taro", to=to, subject=subject, body=body,
                   message_id="<t1@client.example>" if with_ids else None,
                   date=DATE if with_ids else None)


def client_tls_context() -> ssl.SSLContext:
    """Verifies nothing: the test server's certificate is self-signed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def open_starttls(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    client.ehlo("client.example")
    client.starttls(context=client_tls_context())
    client.ehlo("client.example")
    return client


def open_tls(port: int) -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL("127.0.0.1", port, timeout=30, context=client_tls_context())
    client.ehlo("client.example")
    return client


def _text(reply: bytes | str) -> str:
    return reply.decode() if isinstance(reply, bytes) else reply


def auth_plain(client: smtplib.SMTP, user: str, password: str = PASSWORD) -> tuple[int, str]:
    """One AUTH PLAIN attempt (smtplib.login would retry with LOGIN, doubling failures)."""
    client.user, client.password = user, password
    try:
        code, text = client.auth("PLAIN", client.auth_plain)
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code, _text(exc.smtp_error)
    return code, text.decode()


def send_expect(
    client: smtplib.SMTP, message: bytes, *, mail_from: str = SENDER,
    rcpt_tos: tuple[str, ...] = (NEIGHBOUR,),
) -> tuple[int, str]:
    """Send and return (code, text) of the reply that decided it (250 when accepted)."""
    try:
        client.sendmail(mail_from, list(rcpt_tos), message)
    except smtplib.SMTPSenderRefused as exc:
        return exc.smtp_code, _text(exc.smtp_error)
    except smtplib.SMTPDataError as exc:
        return exc.smtp_code, _text(exc.smtp_error)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return code, text.decode()
    return 250, "accepted"


@dataclass
class SubmissionEnv:
    settings: Settings
    session_factory: sessionmaker[Session]
    cache: PolicyCache
    clock: FrozenClock
    hashing: PasswordHashing
    authenticator: Authenticator
    virus_engine: VirusEngine
    spam_engine: SpamEngine
    contract_id: int
    servers: list[SubmissionServer] = field(default_factory=list)

    @property
    def server(self) -> SubmissionServer:
        return self.servers[0]

    def add_address(self, address: str, *, password: str = PASSWORD, **fields: Any) -> str:
        pop_account = add_address(self.session_factory, address, contract_id=self.contract_id,
                                  password_hash=self.hashing.hash(password), **fields)
        self.cache.load_now()
        return pop_account

    async def update_address(self, address: str, **fields: Any) -> None:
        """Change a row and bump the policy revision, as the API does; then refresh."""

        def write() -> None:
            with self.session_factory() as session, session.begin():
                session.execute(update(Address).where(Address.address == address)
                                .values(**fields))
                session.execute(update(PolicyRevision).where(PolicyRevision.id == 1)
                                .values(revision=PolicyRevision.revision + 1))

        await asyncio.to_thread(write)
        assert await self.cache.refresh_if_changed()

    async def start(
        self, *, overseas: dict[str, Any] | None = None,
        country_overrides: dict[str, str] | None = None,
        virus_engine: VirusEngine | None = None,
        **settings_update: Any,
    ) -> SubmissionServer:
        """Another server on the same database, with some settings replaced."""
        settings = self.settings.model_copy(update=settings_update)
        if overseas is not None:
            settings = settings.model_copy(update={
                "overseas": OverseasConfig(**{**settings.overseas.model_dump(), **overseas})
            })
        lookup = OverrideCountryLookup(country_overrides or {}, BundledCountryLookup())
        server = await start_submission(
            settings, self.session_factory, self.cache, self.clock,
            authenticator=self.authenticator, virus_engine=virus_engine or self.virus_engine,
            spam_engine=self.spam_engine, country_lookup=lookup,
            ssl_context=await asyncio.to_thread(server_ssl_context, settings),
        )
        self.servers.append(server)
        return server

    def inbox(self, address: str) -> list[bytes]:
        new = mailbox_dir(self.settings.maildir_root, address) / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


@pytest.fixture
def submission_settings(make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings(
        mx={"hostname": "mail.example.net"},
        submission={"starttls_port": 0, "tls_port": 0},
        security={"argon2_time_cost": 1, "argon2_memory_kib": 64,
                  "login_max_failures": 3, "login_lock_seconds": 60,
                  "login_base_delay_seconds": 0},
    )
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def db(submission_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(submission_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
async def sub(
    submission_settings: Settings, db: sessionmaker[Session]
) -> AsyncIterator[SubmissionEnv]:
    """Addresses SENDER and NEIGHBOUR, and one server with the default overseas settings
    (loopback trusted)."""
    settings = submission_settings
    clock = FrozenClock()
    with db() as session, session.begin():
        contract = Contract(customer_number="C0001", contact_email="owner@example.com",
                            included_addresses=5, created_at=clock.now())
        session.add(contract)
        if session.get(PolicyRevision, 1) is None:
            session.add(PolicyRevision(id=1, revision=1))
        session.flush()
        contract_id = contract.id
    cache = PolicyCache(db, base_domains=tuple(settings.base_domains),
                        refresh_seconds=settings.mx.policy_refresh_seconds, clock=clock)
    hashing = PasswordHashing(settings.security)
    guard = LoginGuard.from_settings(settings, db, clock)
    env = SubmissionEnv(
        settings, db, cache, clock, hashing, Authenticator(db, hashing, guard),
        build_virus_engine(settings.virus), build_spam_engine(settings.spam), contract_id,
    )
    env.add_address(SENDER)
    env.add_address(NEIGHBOUR)
    await env.start()
    try:
        yield env
    finally:
        for server in env.servers:
            await server.aclose()
        await env.virus_engine.aclose()
        await env.spam_engine.aclose()
