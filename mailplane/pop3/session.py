"""One POP3 conversation: RFC 1939 states and commands, CAPA (RFC 2449), STLS (RFC 2595),
AUTH PLAIN (RFC 5034), response codes (RFC 2449 §8, RFC 3206).  (Over 300 lines: the
read loop, its deadlines and the four ways to log in are one state machine.)

AUTHORIZATION → (USER/PASS or AUTH succeeds, mailbox locked) → TRANSACTION → QUIT → UPDATE.
This module is the conversation and the AUTHORIZATION state; the TRANSACTION and UPDATE
commands are :mod:`mailplane.pop3.maildrop`.  All file and database work runs in threads.

Before login a client has ``login_deadline_seconds`` in all (and, while the listener is
under pressure, ``pressure_timeout_seconds`` per command); after login the RFC 1939 §3
autologout timer applies.  Message numbers are ASCII digits only (RFC 1939 §3: a
Unicode digit such as ``²`` is not a number, ``-ERR`` and the session goes on).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from mailplane.auth.credentials import Authenticator, AuthOutcome, AuthResult
from mailplane.mailstore.paths import mailbox_dir
from mailplane.net.throttled_log import ThrottledLog
from mailplane.pop3.mailbox import Mailbox, MailboxInUse
from mailplane.pop3.maildrop import MaildropCommands

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: RFC 2449 §4: command lines are at most 255 octets including the CRLF.
MAX_COMMAND_LINE = 255
#: SASL continuation lines (base64 of user and password) may be longer (RFC 5034 §4).
MAX_SASL_LINE = 1024
#: Connections are closed after this many failed logins; the guard counts them all anyway.
MAX_AUTH_FAILURES_PER_CONNECTION = 3
#: Unknown or misplaced commands a session may send before it is closed (Dovecot closes
#: after 10 invalid commands; Postfix's hard error limit is 20).
MAX_BAD_COMMANDS = 20


@dataclass(frozen=True, slots=True)
class SessionConfig:
    maildir_root: Path
    tls_context: ssl.SSLContext | None
    #: Allow USER/PASS and AUTH without TLS from loopback peers (development, tests).
    allow_plaintext_auth: bool
    idle_timeout_seconds: float
    implementation: str = "mailplane"
    #: Seconds from connecting to a successful login (SPEC §8a greeting deadline).
    login_deadline_seconds: float = 60.0
    #: Per-command timeout before login while the listener is under pressure.
    pressure_timeout_seconds: float = 10.0
    under_pressure: Callable[[], bool] = lambda: False


class _Closed(Exception):
    """The client went away, idled out, or must be disconnected."""


class OpenSessions:
    """The logged-in sessions of one server by address, so that a change which ends them
    (:mod:`mailplane.delivery.session_ends`: a password reissued, a suspension) can.

    RFC 1939 sessions are short, but nothing in them asks the credential again: without
    this, a session opened before a suspension could RETR and DELE what it listed for as
    long as it keeps sending commands (the autologout counts idle time only) — and holds
    the mailbox lock, so the owner's own client is refused ``[IN-USE]`` meanwhile."""

    def __init__(self) -> None:
        self._by_address: dict[str, set[Pop3Session]] = {}

    def add(self, address: str, session: Pop3Session) -> None:
        self._by_address.setdefault(address.lower(), set()).add(session)

    def discard(self, address: str, session: Pop3Session) -> None:
        sessions = self._by_address.get(address.lower())
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._by_address[address.lower()]

    def end(self, addresses: frozenset[str]) -> int:
        """Close the connections of ``addresses``' sessions (no UPDATE state: what they
        marked deleted stays, RFC 1939 §6); how many were closed."""
        ended = 0
        for address in addresses:
            for session in list(self._by_address.get(address.lower(), ())):
                session.end()
                ended += 1
                log.info("pop3: ended the open session of %s (peer %s)", address,
                         session.peer_ip)
        return ended


Handler = Callable[[str], Awaitable[None]]


class Pop3Session(MaildropCommands):
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        config: SessionConfig,
        authenticator: Authenticator,
        secure: bool,
        open_sessions: OpenSessions | None = None,
    ) -> None:
        self._open_sessions = open_sessions
        self._address: str | None = None
        self._reader = reader
        self._writer = writer
        self._config = config
        self._authenticator = authenticator
        self._secure = secure
        peer = writer.get_extra_info("peername")
        self._peer_ip = str(peer[0]) if peer else "unknown"
        self._user: str | None = None
        self._auth_failures = 0
        self._mailbox: Mailbox | None = None
        self._deleted: set[int] = set()
        self._done = False
        self._bad_commands = 0
        self._login_by = time.monotonic() + config.login_deadline_seconds

    # -- connection loop -------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._send(f"+OK {self._config.implementation} POP3 server ready")
            while not self._done:
                line = await self._read_line(MAX_COMMAND_LINE)
                if line is None:
                    await self._send("-ERR line too long (RFC 2449: at most 255 octets)")
                    continue
                await self._dispatch(line)
        except _Closed:
            pass
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:
            _throttled.error(("session", type(exc).__name__), "pop3 session failed: peer %s:"
                             " %s", self._peer_ip, type(exc).__name__, exc_info=exc)
            with contextlib.suppress(Exception):
                await self._send("-ERR [SYS/TEMP] internal server error")
        finally:
            if self._address is not None and self._open_sessions is not None:
                self._open_sessions.discard(self._address, self)
            await self._release_mailbox()
            self._writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 5)

    def _read_timeout(self) -> float:
        """Autologout after login; before it, what is left of the login deadline (and
        the pressure timeout while the listener is full)."""
        config = self._config
        if self._mailbox is not None:
            return config.idle_timeout_seconds
        timeout = min(config.idle_timeout_seconds, self._login_by - time.monotonic())
        if config.under_pressure():
            timeout = min(timeout, config.pressure_timeout_seconds)
        return max(timeout, 0.0)

    async def _read_line(self, max_octets: int) -> str | None:
        """One CRLF (or LF) terminated line; None when it is longer than ``max_octets``."""
        try:
            raw = await asyncio.wait_for(self._reader.readuntil(b"\n"), self._read_timeout())
        except TimeoutError:
            past_deadline = self._mailbox is None and time.monotonic() >= self._login_by
            with contextlib.suppress(Exception):
                await self._send("-ERR [SYS/TEMP] no login in time; closing connection"
                                 if past_deadline else "-ERR autologout; idle for too long")
            raise _Closed from None
        except asyncio.LimitOverrunError:
            with contextlib.suppress(Exception):
                await self._send("-ERR line too long; closing connection")
            raise _Closed from None
        except asyncio.IncompleteReadError:
            raise _Closed from None
        if len(raw) > max_octets:
            return None
        return raw.rstrip(b"\r\n").decode("utf-8", "replace")

    async def _send(self, line: str) -> None:
        self._writer.write(line.encode("utf-8") + b"\r\n")
        await self._writer.drain()

    async def _send_multiline(self, first: str, lines: list[str]) -> None:
        body = [first, *(f".{x}" if x.startswith(".") else x for x in lines), "."]
        self._writer.write("".join(f"{x}\r\n" for x in body).encode("utf-8"))
        await self._writer.drain()

    async def _dispatch(self, line: str) -> None:
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        handlers = self._transaction_handlers() if self._mailbox else self._auth_handlers()
        handler = handlers.get(keyword)
        if handler is None:
            self._bad_commands += 1
            if self._bad_commands >= MAX_BAD_COMMANDS:
                await self._send("-ERR too many invalid commands; closing connection")
                raise _Closed
            if keyword in self._transaction_handlers() or keyword in self._auth_handlers():
                await self._send(f"-ERR {keyword} is not valid in this state")
            else:
                await self._send("-ERR unknown command")
            return
        await handler(argument)

    def _auth_handlers(self) -> dict[str, Handler]:
        return {
            "CAPA": self._capa,
            "USER": self._user_cmd,
            "PASS": self._pass_cmd,
            "AUTH": self._auth_cmd,
            "STLS": self._stls,
            "QUIT": self._quit,
        }

    def _transaction_handlers(self) -> dict[str, Handler]:
        return {
            "CAPA": self._capa,
            "STAT": self._stat,
            "LIST": self._list,
            "UIDL": self._uidl,
            "RETR": self._retr,
            "TOP": self._top,
            "DELE": self._dele,
            "RSET": self._rset,
            "NOOP": self._noop,
            "QUIT": self._quit,
        }

    # -- AUTHORIZATION state ---------------------------------------------------------

    def _login_allowed(self) -> bool:
        """RFC 2595 §2.4 / non-negotiable: no password over an unencrypted connection."""
        return self._secure or (self._config.allow_plaintext_auth and _is_loopback(self._peer_ip))

    async def _capa(self, _argument: str) -> None:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self._mailbox is None:
            if self._login_allowed():
                caps += ["USER", "SASL PLAIN"]
            if not self._secure and self._config.tls_context is not None:
                caps.append("STLS")
        caps.append(f"IMPLEMENTATION {self._config.implementation}")
        await self._send_multiline("+OK capability list follows", caps)

    async def _refuse_plaintext(self) -> bool:
        if self._login_allowed():
            return False
        await self._send("-ERR [AUTH] plaintext login is not allowed here; use STLS first")
        return True

    async def _user_cmd(self, argument: str) -> None:
        if await self._refuse_plaintext():
            return
        if not argument.strip():
            await self._send("-ERR USER needs a name")
            return
        self._user = argument.strip()
        # The same answer for every name: existence is never revealed (RFC 1939 §13).
        await self._send("+OK send PASS")

    async def _pass_cmd(self, argument: str) -> None:
        if await self._refuse_plaintext():
            return
        if self._user is None:
            await self._send("-ERR USER first")
            return
        user, self._user = self._user, None
        await self._login(user, argument)

    async def _auth_cmd(self, argument: str) -> None:
        mechanism, _, initial = argument.strip().partition(" ")
        if not mechanism:
            await self._send_multiline("+OK SASL mechanisms follow", ["PLAIN"])
            return
        if mechanism.upper() != "PLAIN":
            await self._send("-ERR unsupported authentication mechanism")
            return
        if await self._refuse_plaintext():
            return
        response = initial.strip()
        if not response:
            await self._send("+ ")
            line = await self._read_line(MAX_SASL_LINE)
            response = (line or "").strip()
            if line is None or response == "*":
                await self._send("-ERR authentication cancelled")
                return
        if response == "=":
            response = ""
        try:
            authzid, authcid, password = (
                base64.b64decode(response, validate=True).decode("utf-8").split("\0")
            )
        except (binascii.Error, UnicodeDecodeError, ValueError):
            await self._send("-ERR malformed SASL PLAIN response")
            return
        if authzid and authzid.lower() != authcid.lower():
            await self._send("-ERR [AUTH] cannot log in as another user")
            return
        await self._login(authcid, password)

    async def _login(self, username: str, password: str) -> None:
        result = await self._authenticator.authenticate(
            username, password, peer_ip=self._peer_ip, listener="pop3"
        )
        if result.outcome is AuthOutcome.OK:
            await self._open_mailbox(result)
            return
        await self._send(_LOGIN_REFUSALS[result.outcome])
        if result.outcome is AuthOutcome.BAD_CREDENTIALS:
            self._auth_failures += 1
            if self._auth_failures >= MAX_AUTH_FAILURES_PER_CONNECTION:
                raise _Closed

    async def _open_mailbox(self, result: AuthResult) -> None:
        assert result.address is not None
        try:
            root = mailbox_dir(self._config.maildir_root, result.address)
            self._mailbox = await asyncio.to_thread(Mailbox.open, root)
        except MailboxInUse:
            await self._send("-ERR [IN-USE] mailbox is in use by another POP3 session")
            return
        except (OSError, ValueError) as exc:
            log.error("pop3: cannot open mailbox of %s: %s", result.pop_account, exc)
            await self._send("-ERR [SYS/TEMP] mailbox temporarily unavailable")
            return
        if self._open_sessions is not None:
            self._address = result.address
            self._open_sessions.add(result.address, self)
        count, octets = self._totals()
        await self._send(f"+OK {count} messages ({octets} octets)")

    @property
    def peer_ip(self) -> str:
        return self._peer_ip

    def end(self) -> None:
        """Close the connection from outside (:class:`OpenSessions`): a command being
        answered fails to write, a read meets the end of the stream, and the session
        ends without its UPDATE state."""
        self._done = True
        self._writer.close()

    async def _stls(self, _argument: str) -> None:
        context = self._config.tls_context
        if self._secure or context is None:
            await self._send("-ERR STLS not available")
            return
        # Anything the client sent after STLS but before the handshake would be plaintext
        # smuggled into the TLS session (the STARTTLS command-injection class): refuse it.
        buffered = getattr(self._reader, "_buffer", b"")
        await self._send("+OK begin TLS negotiation")
        if buffered:
            raise _Closed
        await self._writer.start_tls(context)
        self._secure = True
        self._user = None


_LOGIN_REFUSALS: dict[AuthOutcome, str] = {
    AuthOutcome.BAD_CREDENTIALS: "-ERR [AUTH] invalid user name or password",
    AuthOutcome.SUSPENDED: "-ERR [AUTH] this mailbox is suspended; contact your provider",
    AuthOutcome.LOCKED: "-ERR [SYS/TEMP] too many failed logins; try again later",
    AuthOutcome.UNAVAILABLE: "-ERR [SYS/TEMP] login temporarily unavailable; try again later",
}


def _is_loopback(peer_ip: str) -> bool:
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
