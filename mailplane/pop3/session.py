"""One POP3 conversation: RFC 1939 states and commands, CAPA (RFC 2449), STLS (RFC 2595),
AUTH PLAIN (RFC 5034), response codes (RFC 2449 §8, RFC 3206).

AUTHORIZATION → (USER/PASS or AUTH succeeds, mailbox locked) → TRANSACTION → QUIT → UPDATE:
deletions marked with DELE are applied only in UPDATE, so a dropped connection deletes
nothing (RFC 1939 §6).  All file and database work runs in threads.

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
from mailplane.pop3.encoding import CHUNK_SIZE, WireEncoder
from mailplane.pop3.mailbox import Mailbox, MailboxInUse, StoredMessage

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


def _ascii_number(text: str) -> int | None:
    """A non-negative decimal number in ASCII digits, or None (``"²".isdigit()`` is True,
    but ``int("²")`` raises)."""
    return int(text) if text.isascii() and text.isdigit() else None


class _Closed(Exception):
    """The client went away, idled out, or must be disconnected."""


Handler = Callable[[str], Awaitable[None]]


class Pop3Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        config: SessionConfig,
        authenticator: Authenticator,
        secure: bool,
    ) -> None:
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
        count, octets = self._totals()
        await self._send(f"+OK {count} messages ({octets} octets)")

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

    # -- TRANSACTION state -----------------------------------------------------------

    def _totals(self) -> tuple[int, int]:
        live = [m for i, m in enumerate(self._messages(), 1) if i not in self._deleted]
        return len(live), sum(m.size for m in live)

    def _messages(self) -> list[StoredMessage]:
        return self._mailbox.messages if self._mailbox else []

    async def _message_number(self, argument: str) -> int | None:
        number = _ascii_number(argument.strip()) or 0
        if not 1 <= number <= len(self._messages()):
            await self._send("-ERR no such message")
            return None
        if number in self._deleted:
            await self._send(f"-ERR message {number} already deleted")
            return None
        return number

    async def _stat(self, _argument: str) -> None:
        count, octets = self._totals()
        await self._send(f"+OK {count} {octets}")

    async def _list(self, argument: str) -> None:
        await self._listing(argument, lambda m: str(m.size), "scan listing")

    async def _uidl(self, argument: str) -> None:
        await self._listing(argument, lambda m: m.uid, "unique-id listing")

    async def _listing(
        self, argument: str, column: Callable[[StoredMessage], str], title: str
    ) -> None:
        if argument.strip():
            number = await self._message_number(argument)
            if number is not None:
                await self._send(f"+OK {number} {column(self._messages()[number - 1])}")
            return
        lines = [
            f"{i} {column(m)}"
            for i, m in enumerate(self._messages(), 1)
            if i not in self._deleted
        ]
        await self._send_multiline(f"+OK {title} follows", lines)

    async def _retr(self, argument: str) -> None:
        number = await self._message_number(argument)
        if number is not None:
            message = self._messages()[number - 1]
            await self._stream(message, WireEncoder(), f"+OK {message.size} octets")

    async def _top(self, argument: str) -> None:
        number_text, _, lines_text = argument.strip().partition(" ")
        body_lines = _ascii_number(lines_text.strip())
        if body_lines is None:
            await self._send("-ERR usage: TOP message lines")
            return
        number = await self._message_number(number_text)
        if number is not None:
            encoder = WireEncoder(body_lines=body_lines)
            await self._stream(self._messages()[number - 1], encoder, "+OK top of message")

    async def _stream(self, message: StoredMessage, encoder: WireEncoder, first: str) -> None:
        """Send the message chunk by chunk; memory stays at one chunk whatever its size."""
        try:
            handle = await asyncio.to_thread(open, message.path, "rb")
        except FileNotFoundError:
            await self._send("-ERR message is no longer available")
            return
        except OSError:
            await self._send("-ERR [SYS/TEMP] cannot read message")
            return
        try:
            await self._send(first)
            while not encoder.done:
                chunk = await asyncio.to_thread(handle.read, CHUNK_SIZE)
                if not chunk:
                    break
                self._writer.write(encoder.feed(chunk))
                await self._writer.drain()
            self._writer.write(encoder.finish() + b".\r\n")
            await self._writer.drain()
        finally:
            await asyncio.to_thread(handle.close)

    async def _dele(self, argument: str) -> None:
        number = await self._message_number(argument)
        if number is not None:
            self._deleted.add(number)
            await self._send(f"+OK message {number} deleted")

    async def _rset(self, _argument: str) -> None:
        self._deleted.clear()
        count, octets = self._totals()
        await self._send(f"+OK maildrop has {count} messages ({octets} octets)")

    async def _noop(self, _argument: str) -> None:
        await self._send("+OK")

    async def _quit(self, _argument: str) -> None:
        self._done = True
        mailbox = self._mailbox
        if mailbox is None or not self._deleted:
            await self._send("+OK bye")
            return
        # UPDATE state (RFC 1939 §6): only now are the marked messages removed.
        doomed = [m for i, m in enumerate(mailbox.messages, 1) if i in self._deleted]
        try:
            failed = await asyncio.to_thread(mailbox.delete, doomed)
        except OSError:
            failed = len(doomed)
        if failed:
            await self._send("-ERR [SYS/TEMP] some deleted messages not removed")
        else:
            await self._send("+OK bye")

    async def _release_mailbox(self) -> None:
        mailbox, self._mailbox = self._mailbox, None
        if mailbox is not None:
            await asyncio.to_thread(mailbox.close)


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
