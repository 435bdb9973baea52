"""POP3 fixtures: a real server on free ports in its own event-loop thread, so tests talk to
it with the blocking ``poplib`` exactly as a mail client would."""

from __future__ import annotations

import asyncio
import itertools
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator
from mailplane.auth.login_guard import LoginGuard
from mailplane.auth.passwords import PasswordHashing
from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.mailstore.paths import mailbox_dir
from mailplane.net.tls import server_ssl_context
from mailplane.pop3.server import Pop3Server, start_pop3
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from tests.factories import addresses

PASSWORD = "Secret.pass1"
_counter = itertools.count(1)


def add_address(
    session_factory: sessionmaker[Session],
    hashing: PasswordHashing,
    address: str,
    *,
    password: str = PASSWORD,
    status: str = "active",
    contract_status: str = "active",
) -> str:
    """An address with POP password ``password`` under a contract of its own; returns the
    POP account."""
    return addresses.add_address(session_factory, address, contract_status=contract_status,
                                 password_hash=hashing.hash(password), status=status)


def deliver(settings: Settings, address: str, data: bytes, *, name: str | None = None) -> str:
    """Write a message into the address's Maildir the way the MX service does; returns the
    Maildir unique name."""
    root = mailbox_dir(settings.maildir_root, address)
    for sub in ("tmp", "new", "cur"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    unique = name or f"1763866800.M{next(_counter)}P{os.getpid()}.node1,S={len(data)}"
    (root / "tmp" / unique).write_bytes(data)
    os.rename(root / "tmp" / unique, root / "new" / unique)
    return unique


@dataclass
class Pop3Env:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    hashing: PasswordHashing
    clock: FrozenClock
    guard: LoginGuard
    server: Pop3Server
    loop: asyncio.AbstractEventLoop
    extra_servers: list[Pop3Server] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def tls_port(self) -> int:
        return self.server.tls_port

    def add_address(self, address: str, **kwargs: Any) -> str:
        return add_address(self.session_factory, self.hashing, address, **kwargs)

    def deliver(self, address: str, data: bytes, **kwargs: Any) -> str:
        return deliver(self.settings, address, data, **kwargs)

    def maildir(self, address: str) -> Path:
        return mailbox_dir(self.settings.maildir_root, address)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start_another_server(self, **kwargs: Any) -> Pop3Server:
        authenticator = Authenticator(self.session_factory, self.hashing, self.guard)
        server: Pop3Server = self.run(
            start_pop3(self.settings, self.session_factory, authenticator, self.clock,
                       **kwargs)
        )
        self.extra_servers.append(server)
        return server


@pytest.fixture
def event_loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pop3-test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def pop3_env(
    make_settings: Callable[..., Settings], event_loop_thread: asyncio.AbstractEventLoop
) -> Iterator[Pop3Env]:
    settings = make_settings(
        pop3={"port": 0, "tls_port": 0},
        security={"login_max_failures": 3, "login_lock_seconds": 60},
    )
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    session_factory = make_session_factory(engine)
    hashing = PasswordHashing(settings.security)
    clock = FrozenClock()
    guard = LoginGuard.from_settings(settings, session_factory, clock)
    authenticator = Authenticator(session_factory, hashing, guard)

    async def start() -> Pop3Server:
        return await start_pop3(settings, session_factory, authenticator, clock)

    server = asyncio.run_coroutine_threadsafe(start(), event_loop_thread).result(60)
    env = Pop3Env(settings, engine, session_factory, hashing, clock, guard, server,
                  event_loop_thread)
    try:
        yield env
    finally:
        for running in [server, *env.extra_servers]:
            asyncio.run_coroutine_threadsafe(running.close(), event_loop_thread).result(30)
        engine.dispose()


def client_tls_context() -> ssl.SSLContext:
    """Trusts nothing and checks nothing: the test server's certificate is self-signed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


__all__ = ["PASSWORD", "Pop3Env", "add_address", "client_tls_context", "deliver",
           "server_ssl_context"]
