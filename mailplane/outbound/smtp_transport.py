"""One SMTP transaction to a remote server with aiosmtplib, reported per recipient.

Host-level trouble (refused connection, timeout, 4xx greeting/EHLO/MAIL, TLS that fails to
negotiate twice) moves on to the next candidate host; a 5xx to MAIL FROM fails every
recipient; RCPT and DATA replies are per recipient: 2xx sent, 4xx retry, 5xx failed
(RFC 5321 §4.2.1, §4.5.4.1).  A result with no ``remote_mta`` means no host answered.

The TCP connection is opened here (``connect_timeout``) and handed to aiosmtplib, which
then waits for the greeting (``timeout``): so a connection that reached a host is known,
and at most ``session_limit`` of them are made per call (Postfix's smtp_mx_session_limit)
— a list of hosts that accept and never greet costs that many greeting timeouts, not one
per host.

**The reply to the final "."** has its own timeout (``data_done_timeout``, Postfix's
smtp_data_done_timeout: receivers scan the message before they answer), and only that
step has it: the ``DATA`` command's ``354`` is a reply like any other (``timeout``).  The
caller is told when the dot goes out (``on_end_of_data``) so that its own budget for the
whole attempt leaves room for that wait.  No reply in time: the accepted recipients are
retried later (``4.4.2``).  The receiver may have taken the message all the same and the
retry then delivers it twice — the duplicate RFC 1047 describes, the price of never
losing a message; a long wait is what keeps it rare.

TLS: STARTTLS whenever the server offers it.  For MX hops certificates are *not* verified
by default (opportunistic TLS, RFC 7435: most MX certificates don't match the MX name and a
failed check would only push the mail back to plain text); if the handshake itself fails we
reconnect once without TLS, as Postfix does.  A smarthost gets verified TLS because we send
it credentials.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiosmtplib
from aiosmtplib import SMTPStatus

log = logging.getLogger(__name__)

Outcome = Literal["sent", "retry", "failed"]
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class RecipientResult:
    recipient: str
    outcome: Outcome
    status: str  # RFC 3463 enhanced status code
    diagnostic: str  # what the remote said (or why we could not ask it)
    remote_mta: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One place to try: ``name`` for TLS/SNI and reports, ``address`` to connect to."""

    name: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class TransportOptions:
    local_hostname: str
    #: The greeting and each reply.
    timeout: float
    verify_certs: bool = False
    username: str = ""
    password: str = ""
    #: The TCP connect (None: ``timeout``).
    connect_timeout: float | None = None
    #: Connections that reached a host, per call (0: no limit).
    session_limit: int = 0
    #: The reply to the final "." of DATA (None: ``timeout``).
    data_done_timeout: float | None = None
    #: Called with ``data_done_timeout`` as the final "." goes out: the caller's budget
    #: for the whole attempt must leave that long for the reply.
    on_end_of_data: Callable[[float], None] | None = None

#: QUIT after a finished transaction waits at most this long (the outcome is known).
QUIT_TIMEOUT = 5.0


class _HostTempFail(Exception):
    pass


class _NoReplyAfterData(Exception):
    """The final "." went out and no reply came within ``data_done_timeout``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no reply to the end of data within {seconds:g}s")
        self.seconds = seconds


class _AllFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_of(code: int, message: str) -> str:
    match = _ENHANCED.match(message)
    if match and match.group(1) == str(code // 100):
        return ".".join(match.groups())
    return f"{code // 100}.0.0"


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"


def _result(recipient: str, code: int, message: str, host: str) -> RecipientResult:
    if 200 <= code < 300:
        outcome: Outcome = "sent"
    elif code >= 500:
        outcome = "failed"
    else:
        outcome = "retry"
    return RecipientResult(
        recipient, outcome, status_of(code, message), _reply(code, message), host
    )


_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


async def send_message(
    candidates: list[Candidate],
    *,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    options: TransportOptions,
) -> list[RecipientResult]:
    """Try ``candidates`` in order until one gives an answer for every recipient."""
    last_error = "no host to try"
    sessions = 0
    for candidate in candidates:
        for use_tls in (True, False):
            if options.session_limit and sessions >= options.session_limit:
                log.info("outbound: %d session(s) without an answer, giving up: %s",
                         sessions, last_error)
                return [RecipientResult(r, "retry", "4.4.1",
                                        f"{last_error} (session limit {sessions} reached)")
                        for r in recipients]
            try:
                sock = await _open(candidate, options.connect_timeout or options.timeout)
            except OSError as exc:  # TimeoutError included
                last_error = (f"{candidate.name}[{candidate.address}]: connect: "
                              f"{type(exc).__name__}: {exc}")
                break
            sessions += 1
            try:
                return await _transaction(
                    candidate, sock, use_tls=use_tls, mail_from=mail_from,
                    recipients=recipients, message=message, options=options,
                )
            except _AllFailed as exc:
                return [_result(r, exc.code, exc.message, candidate.name) for r in recipients]
            except ssl.SSLError as exc:
                last_error = f"{candidate.name}: TLS failed: {exc}"
                log.info("%s; retrying without TLS", last_error)
                continue
            except _HostTempFail as exc:
                last_error = f"{candidate.name}: {exc}"
            except _CONNECTION_ERRORS as exc:
                last_error = f"{candidate.name}[{candidate.address}]: {type(exc).__name__}: {exc}"
            break
        log.info("outbound host failed: %s", last_error)
    return [RecipientResult(r, "retry", "4.4.1", last_error) for r in recipients]


async def _open(candidate: Candidate, seconds: float) -> socket.socket:
    """A TCP connection to ``candidate`` (its address, or each address of a smarthost
    name in turn), each try within ``seconds``."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(seconds):
        infos = await loop.getaddrinfo(candidate.address, candidate.port,
                                       type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {candidate.address}")
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(seconds):
                await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


async def _transaction(
    candidate: Candidate,
    sock: socket.socket,
    *,
    use_tls: bool,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    options: TransportOptions,
) -> list[RecipientResult]:
    smtp = aiosmtplib.SMTP(
        hostname=candidate.name,
        sock=sock,
        local_hostname=options.local_hostname,
        timeout=options.timeout,
        start_tls=False,
        validate_certs=options.verify_certs,
    )
    try:
        await smtp.connect()
    except aiosmtplib.SMTPConnectResponseError as exc:
        sock.close()
        raise _HostTempFail(_reply(exc.code, exc.message)) from None
    except BaseException:
        sock.close()
        raise
    try:
        results = await _converse(
            smtp, candidate, use_tls=use_tls, mail_from=mail_from,
            recipients=recipients, message=message, options=options,
        )
    except BaseException:
        smtp.close()  # no QUIT on a failed or cut session: it could wait a full timeout
        raise
    try:
        await smtp.quit(timeout=min(options.timeout, QUIT_TIMEOUT))
    except _CONNECTION_ERRORS:
        smtp.close()
    return results


async def _converse(
    smtp: aiosmtplib.SMTP,
    candidate: Candidate,
    *,
    use_tls: bool,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    options: TransportOptions,
) -> list[RecipientResult]:
    host = candidate.name
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        await smtp.helo()
    if use_tls and smtp.supports_extension("starttls"):
        await smtp.starttls(server_hostname=candidate.name)
    if options.username:
        try:
            await smtp.login(options.username, options.password)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise _AllFailed(exc.code, f"authentication refused: {exc.message}") from None
            raise _HostTempFail(_reply(exc.code, exc.message)) from None
    mail_options = []
    if smtp.supports_extension("8bitmime") and not message.isascii():
        mail_options.append("BODY=8BITMIME")
    try:
        await smtp.mail(mail_from, options=mail_options)
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code >= 500:
            raise _AllFailed(exc.code, exc.message) from None
        raise _HostTempFail(_reply(exc.code, exc.message)) from None
    results: dict[str, RecipientResult] = {}
    accepted: list[str] = []
    for recipient in recipients:
        try:
            await smtp.rcpt(recipient)
        except aiosmtplib.SMTPResponseException as exc:
            results[recipient] = _result(recipient, exc.code, exc.message, host)
        else:
            accepted.append(recipient)
    if accepted:
        try:
            response = await _data(smtp, message, options)
        except aiosmtplib.SMTPResponseException as exc:
            for recipient in accepted:
                results[recipient] = _result(recipient, exc.code, exc.message, host)
        except _NoReplyAfterData as exc:
            log.info("outbound: %s gave no reply to the end of data within %gs; retried "
                     "later (it may have taken the message: a duplicate, RFC 1047)",
                     host, exc.seconds)
            for recipient in accepted:
                results[recipient] = RecipientResult(
                    recipient, "retry", "4.4.2",
                    f"{host}: {exc} (the message may have been delivered; RFC 1047)", host)
        except _CONNECTION_ERRORS as exc:
            for recipient in accepted:
                results[recipient] = RecipientResult(
                    recipient, "retry", "4.4.2", f"{host}: lost during DATA: {exc}", host
                )
        else:
            for recipient in accepted:
                results[recipient] = _result(recipient, response.code, response.message, host)
    return [results[r] for r in recipients]


async def _data(smtp: aiosmtplib.SMTP, message: bytes,
                options: TransportOptions) -> aiosmtplib.SMTPResponse:
    """``DATA``, the content, and the reply to its final "." — that wait alone under
    ``data_done_timeout`` (aiosmtplib's ``data()`` has one timeout for both replies).
    A reply other than ``250`` raises ``SMTPDataError`` as ``data()`` does."""
    start = await smtp.execute_command(b"DATA", timeout=options.timeout)
    if start.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("connection lost after DATA")
    seconds = options.data_done_timeout or options.timeout
    if options.on_end_of_data is not None:
        options.on_end_of_data(seconds)
    # No await between the write and the read: the reply cannot arrive unexpected.
    protocol.write(data_payload(message))
    try:
        response = await protocol.read_response(timeout=seconds)
    except aiosmtplib.SMTPTimeoutError:
        smtp.close()  # the session is out of step: no QUIT, no reuse
        raise _NoReplyAfterData(seconds) from None
    except aiosmtplib.SMTPServerDisconnected:
        smtp.close()
        raise
    if response.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def data_payload(message: bytes) -> bytes:
    """``message`` as DATA sends it (RFC 5321 §4.5.2): CRLF line ends, a leading "."
    doubled, ending with ``CRLF.CRLF``."""
    text = _LINE_END.sub(b"\r\n", message)
    if not text.endswith(b"\r\n"):
        text += b"\r\n"
    return _LEADING_DOT.sub(b"..", text) + b".\r\n"
