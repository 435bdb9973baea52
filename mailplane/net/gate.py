"""The accept gate every mail listener shares (SPEC §8a): a connection is admitted by the
listener's :class:`~mailplane.net.limits.ConnectionLimiter` the moment it is accepted,
before any session, task or TLS handshake exists.

- The gate runs its own accept loop on the listening sockets (``loop.add_reader``; the
  same on asyncio and uvloop): ``accept()`` gives the peer's address, so a refusal costs
  one short write and a close — the refusal line (``421 4.7.0`` for SMTP,
  ``-ERR [SYS/TEMP]`` for POP3, RFC 5321 §3.8: the client must be able to read it).  The
  close is a *lingering* one (:meth:`GatedServer._linger`): write side shut, whatever the
  client still sends read and dropped until it closes or :data:`LINGER_SECONDS` pass, at
  most :data:`MAX_LINGERING` sockets at once.  A plain ``close()`` with unread input (a
  client that sent EHLO or QUIT before reading the greeting) makes the kernel answer with
  a TCP reset, and the client may never read the 421.
- On an implicit-TLS listener a refusal the client could read needs a handshake first.
  A client over the *per-IP* limits gets it (as Postfix's smtpd in wrapper mode does),
  at most :data:`MAX_REFUSAL_HANDSHAKES` at once, each within
  :data:`REFUSAL_HANDSHAKE_SECONDS`; beyond that, and whenever the listener itself is
  full, the connection is closed (lingering) without a handshake, so a flood never buys
  more than that much of our CPU.
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
from mailplane.net.tls import handshake_failed

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: Connections accepted per turn of the event loop (see the module docstring).
ACCEPT_BATCH = 32
#: A refused socket is kept half-closed, reading and dropping what the client still sends,
#: at most this long (see the module docstring) ...
LINGER_SECONDS = 2.0
#: ... and at most this many at once per server (beyond: closed at once).
MAX_LINGERING = 64
#: Refusals answered inside a TLS handshake on an implicit-TLS listener, at once per server,
#: and the time each handshake may take.
MAX_REFUSAL_HANDSHAKES = 16
REFUSAL_HANDSHAKE_SECONDS = 5.0
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
        self._lingering: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        self._refusal_handshakes = 0
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
        for conn, _timer in list(self._lingering.values()):
            self._end_linger(conn)
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
        if self._gate.tls is None:
            try:
                conn.setblocking(False)
                conn.send(self._gate.refusal_line)  # a fresh socket's buffer takes it
            except OSError:
                conn.close()
                return
        elif (decision is not Refusal.LISTENER_FULL
              and self._refusal_handshakes < MAX_REFUSAL_HANDSHAKES):
            self._refusal_handshakes += 1
            task = self._loop.create_task(self._refuse_over_tls(conn, ip))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            return
        self._linger(conn)

    async def _refuse_over_tls(self, conn: socket.socket, ip: str) -> None:
        """The refusal line inside a TLS session (implicit-TLS listener, per-IP limits)."""
        line = self._gate.refusal_line
        try:
            await self._loop.connect_accepted_socket(
                lambda: _WriteAndClose(line), conn, ssl=self._gate.tls,
                ssl_handshake_timeout=REFUSAL_HANDSHAKE_SECONDS)
        except (OSError, TimeoutError) as exc:
            handshake_failed(self._listener, ip, exc)
            conn.close()
        except asyncio.CancelledError:
            conn.close()
        finally:
            self._refusal_handshakes -= 1

    def _linger(self, conn: socket.socket) -> None:
        """Close ``conn`` without a TCP reset: shut the write side (the refusal line, if
        any, is already queued before the FIN), then read and drop what the client still
        sends until it closes, or :data:`LINGER_SECONDS` pass."""
        try:
            conn.setblocking(False)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        if len(self._lingering) >= MAX_LINGERING or self._closed:
            conn.close()
            return
        fd = conn.fileno()
        timer = self._loop.call_later(LINGER_SECONDS, self._end_linger, conn)
        self._lingering[fd] = (conn, timer)
        self._loop.add_reader(fd, self._drain, conn)

    def _drain(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._end_linger(conn)

    def _end_linger(self, conn: socket.socket) -> None:
        entry = self._lingering.pop(conn.fileno(), None)
        if entry is not None:
            entry[1].cancel()
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(conn.fileno())
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
        except (OSError, TimeoutError) as exc:
            ticket.release()  # idempotent: the protocol may have released it already
            conn.close()
            if self._gate.tls is not None:
                handshake_failed(self._listener, _peer_of(conn, ticket), exc)
        except asyncio.CancelledError:
            ticket.release()
            conn.close()
        except Exception as exc:
            _throttled.error((self._listener, "start", type(exc).__name__),
                             "%s: could not start a session", self._listener, exc_info=exc)
            ticket.release()
            conn.close()


def _peer_of(conn: socket.socket, ticket: Ticket) -> str:
    try:
        peer = conn.getpeername()
    except OSError:
        return ticket.key  # the client key (IP, or IPv6 /64) the ticket was counted by
    return str(peer[0]) if isinstance(peer, tuple) and peer else ticket.key


class _WriteAndClose(asyncio.Protocol):
    """Writes one line once the (TLS) connection is up, then closes it."""

    def __init__(self, line: bytes) -> None:
        self._line = line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writable: Any = transport
        writable.write(self._line)
        writable.close()


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
