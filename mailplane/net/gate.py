"""The accept gate every listener shares (SPEC §8a): a connection is admitted by the
listener's :class:`~mailplane.net.limits.ConnectionLimiter` before any session exists.

- Over a limit, a plain listener writes its one-line refusal (``421 4.7.0`` for SMTP,
  ``-ERR [SYS/TEMP]`` for POP3) and closes; no handler, no task, no TLS handshake is
  spent on it.  An implicit-TLS listener closes without a word (a refusal before the
  handshake could not be read; after it, every refused flood connection would cost a
  handshake).
- Admitted, the connection is handed to the listener's protocol, which owns the
  :class:`~mailplane.net.limits.Ticket` and releases it in ``connection_lost``
  (:class:`Admission`).  On an implicit-TLS listener the handshake runs first, bounded
  by ``handshake_timeout``; a failed or abandoned handshake gives the place back.
- The kernel's listen backlog is sized by configuration (``listen_backlog``), while the
  event loop accepts at most :data:`ACCEPT_BATCH` connections per turn (asyncio accepts
  as many per turn as the backlog it was given, all before the first is refused: a
  1,024 burst would hold 1,024 descriptors at once).  The loop's own ``accept()`` errors
  (EMFILE at the descriptor limit) are logged once per interval by
  :func:`~mailplane.net.throttled_log.install_loop_exception_handler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailplane.net.limits import ConnectionLimiter, Refusal, Ticket
from mailplane.net.throttled_log import ThrottledLog

log = logging.getLogger(__name__)
_refusals = ThrottledLog(log)

#: Connections the event loop accepts per turn of the loop (see the module docstring).
ACCEPT_BATCH = 32


class Admission:
    """Mixin for a protocol the gate hands connections to: it keeps the ticket and must
    call :meth:`release_admission` from ``connection_lost``."""

    admission: Ticket | None = None

    def bind_admission(self, ticket: Ticket) -> None:
        self.admission = ticket

    def release_admission(self) -> None:
        ticket, self.admission = self.admission, None
        if ticket is not None:
            ticket.release()


def peer_ip_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


@dataclass(frozen=True, slots=True)
class Gate:
    """How one listener admits connections."""

    limiter: ConnectionLimiter
    #: Written to a refused client on a plain listener (one CRLF-terminated line).
    refusal_line: bytes
    #: Implicit TLS: the handshake runs after admission.
    tls: ssl.SSLContext | None = None
    handshake_timeout: float = 30.0


AppFactory = Callable[[], Any]  # returns an asyncio.Protocol that is also an Admission


class GatedServer:
    """A listening socket behind a gate; closes its pending TLS handshakes with it."""

    def __init__(self, server: asyncio.Server, handshakes: set[asyncio.Task[None]]) -> None:
        self.server = server
        self._handshakes = handshakes

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    def close(self) -> None:
        self.server.close()
        for task in list(self._handshakes):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.gather(*list(self._handshakes), return_exceptions=True)
        await self.server.wait_closed()


class _TlsShim(asyncio.Protocol):
    """Stands in for the application protocol while the TLS handshake runs, so a client
    that leaves mid-handshake never reaches a protocol that was never connected."""

    def __init__(self) -> None:
        self.lost = False
        self.pending: list[bytes] = []
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.pending.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class _GateProtocol(asyncio.Protocol):
    def __init__(self, gate: Gate, factory: AppFactory, listener: str,
                 handshakes: set[asyncio.Task[None]]) -> None:
        self._gate = gate
        self._factory = factory
        self._listener = listener
        self._handshakes = handshakes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        ip = peer_ip_of(transport)
        decision = self._gate.limiter.admit(ip)
        if isinstance(decision, Refusal):
            _refusals.warning((self._listener, decision), "%s: refused a connection from %s"
                              " (%s; %d open)", self._listener, ip, decision.value,
                              self._gate.limiter.active)
            if self._gate.tls is None:
                transport.write(self._gate.refusal_line)
            transport.close()  # after the refusal line is flushed
            return
        if self._gate.tls is None:
            _hand_over(self._factory, transport, transport, decision)
            return
        transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._upgrade(transport, decision))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _upgrade(self, transport: asyncio.Transport, ticket: Ticket) -> None:
        assert self._gate.tls is not None
        shim = _TlsShim()
        loop = asyncio.get_running_loop()
        try:
            tls_transport = await loop.start_tls(
                transport, shim, self._gate.tls, server_side=True,
                ssl_handshake_timeout=self._gate.handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError,
                asyncio.CancelledError):
            ticket.release()
            transport.close()
            return
        if tls_transport is None or shim.lost:
            ticket.release()
            return
        app = _hand_over(self._factory, tls_transport, transport, ticket)
        if app is None:
            return
        for data in shim.pending:
            app.data_received(data)
        if shim.eof:
            app.eof_received()


def _hand_over(factory: AppFactory, transport: asyncio.Transport,
               raw: asyncio.Transport, ticket: Ticket) -> Any:
    """Give the admitted connection (and its ticket) to a new application protocol."""
    try:
        app = factory()
        app.bind_admission(ticket)
        transport.set_protocol(app)
        app.connection_made(transport)
    except Exception:
        log.exception("could not start a session")
        ticket.release()
        with contextlib.suppress(Exception):
            transport.close()
            raw.close()
        return None
    return app


async def start_gated_server(
    factory: AppFactory, *, listener: str, host: str, port: int, gate: Gate,
    backlog: int, reuse_port: bool = False,
) -> GatedServer:
    """Listen on ``host:port`` (0 = any free port) behind ``gate``."""
    loop = asyncio.get_running_loop()
    handshakes: set[asyncio.Task[None]] = set()
    server = await loop.create_server(
        lambda: _GateProtocol(gate, factory, listener, handshakes),
        host=host, port=port, backlog=min(backlog, ACCEPT_BATCH),
        reuse_port=reuse_port or None,
    )
    widen_backlog(server, backlog)
    return GatedServer(server, handshakes)


def widen_backlog(server: asyncio.Server, backlog: int) -> None:
    """Give ``server``'s sockets the kernel backlog ``backlog`` while the loop keeps the
    per-turn accept batch it was created with."""
    for listening in server.sockets:
        raw = socket.socket(fileno=listening.fileno())
        try:
            raw.listen(backlog)
        finally:
            raw.detach()
