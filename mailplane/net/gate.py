"""The accept gate every mail listener shares (SPEC §8a): a connection is admitted by the
listener's :class:`~mailplane.net.limits.ConnectionLimiter` the moment it is accepted,
before any session, task or TLS handshake exists.

- The gate runs its own accept loop on the listening sockets (``loop.add_reader``; the
  same on asyncio and uvloop): ``accept()`` gives the peer's address, so a refusal costs
  one short write and a ``close()`` — the refusal line (``421 4.7.0`` for SMTP,
  ``-ERR [SYS/TEMP]`` for POP3) on a plain listener, nothing on an implicit-TLS one (a
  refusal before the handshake could not be read; after it, every flood connection would
  cost a handshake).
- An admitted socket is handed to the loop with ``connect_accepted_socket`` (with the
  TLS context on an implicit-TLS listener: the handshake runs only now, bounded by
  ``handshake_timeout``).  The listener's protocol owns the
  :class:`~mailplane.net.limits.Ticket` and releases it in ``connection_lost``
  (:class:`Admission`); a failed or abandoned handshake gives the place back here.
- At most :data:`ACCEPT_BATCH` connections are accepted per turn of the loop, so a burst
  never holds more descriptors than that before the gate has refused it; the kernel keeps
  the configured ``listen_backlog``.  When ``accept()`` fails for lack of descriptors
  (EMFILE/ENFILE) the gate stops accepting for a second and says so once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailplane.net.limits import ConnectionLimiter, Refusal, Ticket
from mailplane.net.throttled_log import ThrottledLog

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: Connections accepted per turn of the event loop (see the module docstring).
ACCEPT_BATCH = 32
#: How long the gate stops accepting after the process ran out of descriptors.
RESOURCE_RETRY_SECONDS = 1.0
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


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


def peer_ip_of(transport: Any) -> str:
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
    """Listening sockets behind a gate (``close()`` and ``wait_closed()`` like an
    ``asyncio.Server``)."""

    def __init__(self, sockets: list[socket.socket], gate: Gate, factory: AppFactory,
                 listener: str) -> None:
        self.sockets = sockets
        self._gate = gate
        self._factory = factory
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False
        for sock in sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock.fileno())
            sock.close()
        for task in list(self._pending):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # --- accepting -----------------------------------------------------------------

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting(sock, exc)
                    return
                _throttled.error((self._listener, "accept", exc.errno),
                                 "%s: accept() failed: %s", self._listener, exc)
                return
            ip = str(address[0]) if isinstance(address, tuple) and address else "unknown"
            decision = self._gate.limiter.admit(ip)
            if isinstance(decision, Refusal):
                self._refuse(conn, ip, decision)
                continue
            task = self._loop.create_task(self._start(conn, decision))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _pause_accepting(self, sock: socket.socket, exc: OSError) -> None:
        """Out of descriptors: stop accepting for a second (the kernel queues meanwhile)
        and say so once per interval, not once per attempt."""
        _throttled.error((self._listener, "resources", exc.errno),
                         "%s: accept() out of system resources (%s); pausing %.0f s",
                         self._listener, exc.strerror, RESOURCE_RETRY_SECONDS)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock.fileno())

        def resume() -> None:
            if not self._closed:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

        self._loop.call_later(RESOURCE_RETRY_SECONDS, resume)

    def _refuse(self, conn: socket.socket, ip: str, decision: Refusal) -> None:
        _throttled.warning((self._listener, decision), "%s: refused a connection from %s"
                           " (%s; %d open)", self._listener, ip, decision.value,
                           self._gate.limiter.active)
        with contextlib.suppress(OSError):
            if self._gate.tls is None:
                conn.setblocking(False)
                conn.send(self._gate.refusal_line)  # a fresh socket's buffer takes it
        conn.close()

    async def _start(self, conn: socket.socket, ticket: Ticket) -> None:
        """Hand the admitted socket to the loop and a new session protocol; on an
        implicit-TLS listener the handshake runs here."""
        try:
            app = self._factory()
            app.bind_admission(ticket)
            await self._loop.connect_accepted_socket(
                lambda: app, conn, ssl=self._gate.tls,
                ssl_handshake_timeout=self._gate.handshake_timeout if self._gate.tls else None)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError):
            ticket.release()  # idempotent: the protocol may have released it already
            conn.close()
        except Exception:
            log.exception("%s: could not start a session", self._listener)
            ticket.release()
            conn.close()


def _listening_sockets(host: str, port: int, backlog: int,
                       reuse_port: bool) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address of ``host`` (like
    ``loop.create_server``: IPv6 sockets are IPv6-only; port 0 = any free port)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(
                (i[0], i[1], i[2], i[3], i[4]) for i in infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def start_gated_server(
    factory: AppFactory, *, listener: str, host: str, port: int, gate: Gate,
    backlog: int, reuse_port: bool = False,
) -> GatedServer:
    """Listen on ``host:port`` (0 = any free port) behind ``gate``."""
    sockets = await asyncio.to_thread(_listening_sockets, host, port, backlog, reuse_port)
    return GatedServer(sockets, gate, factory, listener)


def widen_backlog(server: asyncio.Server, backlog: int) -> None:
    """Give ``server``'s sockets the kernel backlog ``backlog`` while the loop keeps the
    smaller per-turn accept batch it was created with (asyncio accepts as many per turn
    as the backlog it was given; used for uvicorn's API listener)."""
    for listening in server.sockets:
        raw = socket.socket(fileno=listening.fileno())
        try:
            raw.listen(backlog)
        finally:
            raw.detach()
