"""POP3 listeners: plain with STLS on ``pop3.port``, implicit TLS on ``pop3.tls_port``
(RFC 8314 §3.3 recommends implicit TLS; STLS stays for older clients, RFC 2595).

Every session is a kept task, cancelled and awaited on :meth:`Pop3Server.close`, so no
mailbox lock outlives the server.  Both listeners share one gate (SPEC §8a,
:mod:`mailplane.net.gate`): at most ``pop3.max_connections`` sessions and
``pop3.max_connections_per_ip`` from one client; one more is answered
``-ERR [SYS/TEMP]`` at once (the TLS port closes it before any handshake) and never gets a
session.  A client must log in within ``pop3.greeting_deadline_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.net.gate import Admission, Gate, GatedServer, start_gated_server
from mailplane.net.limits import ConnectionLimiter, ConnectionLimits
from mailplane.net.tls import server_ssl_context
from mailplane.pop3.session import OpenSessions, Pop3Session, SessionConfig

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT_SECONDS = 600.0  # RFC 1939 §3: at least 10 minutes
#: Longest line the stream reader buffers; longer input closes the connection.
READ_LIMIT = 4096
LISTENER = "pop3"
REFUSAL = b"-ERR [SYS/TEMP] too many connections; try again later\r\n"


class _Pop3Protocol(asyncio.StreamReaderProtocol, Admission):
    """The stream protocol of one admitted connection; gives its place back when lost."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.release_admission()
        super().connection_lost(exc)


class Pop3Server:
    """The running listeners; ``port`` and ``tls_port`` are the ports actually bound."""

    def __init__(self, config: SessionConfig, authenticator: Authenticator,
                 limiter: ConnectionLimiter, *, handshake_timeout: float = 60.0,
                 backlog: int = 1024) -> None:
        self._config = config
        self._authenticator = authenticator
        self.limiter = limiter
        self._handshake_timeout = handshake_timeout
        self._backlog = backlog
        self._servers: list[GatedServer] = []
        self._sessions: set[asyncio.Task[None]] = set()
        self.open_sessions = OpenSessions()
        self.port = 0
        self.tls_port = 0

    async def listen(self, host: str, port: int, *, implicit_tls: bool) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._sessions.add(task)
            try:
                session = Pop3Session(
                    reader,
                    writer,
                    config=self._config,
                    authenticator=self._authenticator,
                    secure=implicit_tls,
                    open_sessions=self.open_sessions,
                )
                await session.run()
            finally:
                self._sessions.discard(task)

        loop = asyncio.get_running_loop()

        def factory() -> _Pop3Protocol:
            reader = asyncio.StreamReader(limit=READ_LIMIT, loop=loop)
            return _Pop3Protocol(reader, handle, loop=loop)

        tls = self._config.tls_context if implicit_tls else None
        gate = Gate(self.limiter, REFUSAL, tls=tls, handshake_timeout=self._handshake_timeout)
        server = await start_gated_server(factory, listener=LISTENER, host=host, port=port,
                                          gate=gate, backlog=self._backlog)
        self._servers.append(server)
        bound = server.port
        log.info("pop3 listening on %s:%d (%s)", host, bound,
                 "implicit TLS" if implicit_tls else "STLS")
        return bound

    async def end_sessions(self, addresses: frozenset[str]) -> None:
        """End the logged-in sessions of ``addresses`` (a :class:`~mailplane.delivery.
        session_ends.SessionEnds` ender)."""
        self.open_sessions.end(addresses)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._sessions):
            task.cancel()
        for task in list(self._sessions):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


async def start_pop3(
    settings: Settings,
    session_factory: sessionmaker[Session],
    authenticator: Authenticator,
    clock: Clock,
    *,
    ssl_context: ssl.SSLContext | None = None,
    allow_plaintext_auth: bool = True,
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
) -> Pop3Server:
    """Bind both listeners (port 0 picks a free port) and return the running server.

    ``allow_plaintext_auth`` permits USER/PASS and AUTH without TLS from loopback peers
    only; other peers must use STLS or the TLS port.  ``session_factory`` and ``clock`` are
    taken for parity with the other services; credentials go through ``authenticator``.
    """
    del session_factory, clock  # the authenticator owns database access and time
    context = ssl_context or await asyncio.to_thread(server_ssl_context, settings)
    limits = settings.pop3
    limiter = ConnectionLimiter(ConnectionLimits.from_settings(
        LISTENER, limits, settings.security.limit_exempt_networks))
    config = SessionConfig(
        maildir_root=settings.maildir_root,
        tls_context=context,
        allow_plaintext_auth=allow_plaintext_auth,
        idle_timeout_seconds=idle_timeout_seconds,
        login_deadline_seconds=limits.greeting_deadline_seconds,
        pressure_timeout_seconds=limits.pressure_idle_timeout_seconds,
        under_pressure=lambda: limiter.under_pressure,
    )
    server = Pop3Server(config, authenticator, limiter,
                        handshake_timeout=limits.greeting_deadline_seconds,
                        backlog=limits.listen_backlog)
    try:
        server.port = await server.listen(settings.pop3.host, settings.pop3.port,
                                           implicit_tls=False)
        server.tls_port = await server.listen(settings.pop3.host, settings.pop3.tls_port,
                                               implicit_tls=True)
    except BaseException:
        await server.close()
        raise
    return server
