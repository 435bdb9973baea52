"""Outbound fixtures: capture MX servers (aiosmtpd on free loopback ports, recording envelopes,
answering 451/550 on demand), tarpits (hosts that accept a connection and never greet),
and a migrated database with a worker factory.
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.outbound.worker import OutboundWorker
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from tests.conftest import SettingsFactory, free_port
from tests.factories.dns import DnsStub, Zone

__all__ = ["DnsStub", "Zone"]

SRS_SECRET = "test-srs-secret"
SRS_DOMAIN = "srs.mailplane.test"

# --- capture MX ------------------------------------------------------------------------


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class CaptureHandler:
    envelopes: list[Captured] = field(default_factory=list)
    #: recipient (lowercase) -> reply text, e.g. "451 4.3.0 try later"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    auth_logins: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(
        self, server: SMTP, session: SmtpSession, envelope: Envelope
    ) -> str:
        if self.data_reply:
            return self.data_reply
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        self.envelopes.append(
            # aiosmtpd records the null reverse-path as "<>"; store it as "".
            Captured((envelope.mail_from or "").strip("<>"), list(envelope.rcpt_tos), content)
        )
        return "250 2.0.0 queued"


@dataclass
class CaptureMx:
    host: str
    port: int
    handler: CaptureHandler
    controller: Controller

    @property
    def envelopes(self) -> list[Captured]:
        return self.handler.envelopes


def _authenticator(users: dict[str, str], handler: CaptureHandler) -> Any:
    def check(
        server: SMTP, session: SmtpSession, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if users.get(login) == auth_data.password.decode():
                handler.auth_logins.append(login)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return check


CaptureFactory = Callable[..., CaptureMx]


@pytest.fixture
def mx_port() -> int:
    """One port shared by every capture MX (on different loopback addresses), because the
    worker's MX port override is one number, like port 25 in production."""
    return capture_port()


#: The loopback addresses capture MXs listen on in the tests.
CAPTURE_HOSTS = tuple(f"127.0.0.{n}" for n in range(1, 12))


def capture_port() -> int:
    """A port free on every :data:`CAPTURE_HOSTS`, below the kernel's ephemeral range.
    A port ``bind(0)`` hands out is one the kernel may next give a client socket as its
    source port on another loopback address — and then a capture MX cannot bind it there
    (``address already in use``, seen once in a full run)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            ephemeral_start = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32768
    low = max(1024, ephemeral_start - 12000)
    for _ in range(500):
        port = random.randrange(low, ephemeral_start)
        if all(_bindable(host, port) for host in CAPTURE_HOSTS):
            return port
    return free_port()


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio binds
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@pytest.fixture
def capture_mx(mx_port: int) -> Iterator[CaptureFactory]:
    started: list[Controller] = []

    def factory(host: str = "127.0.0.2", *, port: int | None = None,
                users: dict[str, str] | None = None,
                handler: CaptureHandler | None = None) -> CaptureMx:
        handler = handler or CaptureHandler()
        kwargs: dict[str, Any] = {}
        if users is not None:
            kwargs = {"authenticator": _authenticator(users, handler),
                      "auth_require_tls": False}
        controller = Controller(handler, hostname=host, port=port or mx_port,
                                ready_timeout=10, **kwargs)
        controller.start()
        started.append(controller)
        return CaptureMx(host, port or mx_port, handler, controller)

    yield factory
    for controller in started:
        controller.stop()


# --- tarpit ------------------------------------------------------------------------------


class Tarpit:
    """Hosts that accept TCP connections on ``port`` and never send a byte (an MX that
    never greets).  ``accepted`` counts connections per host; ``open`` is how many the
    client has not closed yet — nonzero while an attempt is stuck on one."""

    def __init__(self, hosts: list[str], port: int) -> None:
        self.port = port
        self.accepted: dict[str, int] = dict.fromkeys(hosts, 0)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._listeners: list[socket.socket] = []
        for host in hosts:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(64)
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, host)
            self._listeners.append(listener)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tarpit", daemon=True)
        self._thread.start()

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._open)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.accepted.values())

    def _serve(self) -> None:
        while not self._stopping.is_set():
            for key, _events in self._selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data is not None:  # a listener: take the connection, say nothing
                    try:
                        conn, _peer = sock.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    with self._lock:
                        self.accepted[key.data] += 1
                        self._open.add(conn)
                    self._selector.register(conn, selectors.EVENT_READ, None)
                    continue
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # the client gave up
                    self._selector.unregister(sock)
                    sock.close()
                    with self._lock:
                        self._open.discard(sock)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()
        for listener in self._listeners:
            listener.close()
        self._selector.close()


TarpitFactory = Callable[[list[str]], Tarpit]


@pytest.fixture
def tarpit(mx_port: int) -> Iterator[TarpitFactory]:
    """``tarpit(["127.0.1.1", …])``: never-greeting hosts on the MX port."""
    started: list[Tarpit] = []

    def factory(hosts: list[str]) -> Tarpit:
        started.append(Tarpit(hosts, mx_port))
        return started[-1]

    yield factory
    for pit in started:
        pit.close()


# --- database and worker ---------------------------------------------------------------


@dataclass
class OutboundEnv:
    settings: Settings
    session_factory: sessionmaker[Session]
    clock: FrozenClock


@pytest.fixture
def make_outbound_env(make_settings: SettingsFactory) -> Callable[..., OutboundEnv]:
    def factory(**overrides: Any) -> OutboundEnv:
        settings = make_settings(
            srs={"secret": SRS_SECRET, "domain": SRS_DOMAIN},
            outbound={"connect_timeout_seconds": 5.0, **overrides.pop("outbound", {})},
            **overrides,
        )
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        return OutboundEnv(settings, make_session_factory(engine), FrozenClock())

    return factory


@pytest.fixture
def outbound_env(make_outbound_env: Callable[..., OutboundEnv]) -> OutboundEnv:
    return make_outbound_env()


WorkerFactory = Callable[..., OutboundWorker]


@pytest.fixture
def make_worker(dns_stub: DnsStub, mx_port: int) -> WorkerFactory:
    def factory(env: OutboundEnv, worker_id: str = "w1", **kwargs: Any) -> OutboundWorker:
        return OutboundWorker(
            env.settings, env.session_factory, env.clock, worker_id=worker_id,
            dns_nameserver=dns_stub.address, smtp_port_override=mx_port, **kwargs,
        )

    return factory
