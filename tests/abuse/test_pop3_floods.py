"""POP3 under hostile clients (issue 15, SPEC §8a), over real sockets: Unicode digits as
message numbers, connection limits per client IP answered ``-ERR [SYS/TEMP]`` at once (on
the TLS port inside TLS, at most 16 handshakes at once; a full listener closes before any
handshake — docs/security.md), the login deadline, and password guessing from many
addresses that cannot grow the log without bound."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mailplane import metrics
from mailplane.auth import credentials, login_guard
from mailplane.auth.credentials import Authenticator
from mailplane.auth.failed_logins import FAILED_LOGINS_LOGGED_PER_MINUTE, FailedLogins, login_log
from mailplane.pop3.server import Pop3Server, start_pop3
from tests.factories.pop3 import PASSWORD, Pop3Env, client_tls_context

ADDRESS = "hanako@a01.example.net"


def open_from(port: int, source: str) -> tuple[socket.socket, Any]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20,
                                    source_address=(source, 0))
    return sock, sock.makefile("rb")


def ask(sock: socket.socket, reader: Any, command: bytes) -> bytes:
    sock.sendall(command + b"\r\n")
    return bytes(reader.readline())


def multiline(reader: Any) -> list[bytes]:
    lines = []
    while (line := reader.readline()) not in (b".\r\n", b""):
        lines.append(line)
    return lines


@pytest.fixture
def limited(pop3_env: Pop3Env) -> Iterator[Pop3Server]:
    """A second server on the same database with small limits."""
    pop3 = pop3_env.settings.pop3.model_copy(update={
        "max_connections_per_ip": 3, "greeting_deadline_seconds": 1.0})
    settings = pop3_env.settings.model_copy(update={"pop3": pop3})
    authenticator = Authenticator(pop3_env.session_factory, pop3_env.hashing, pop3_env.guard)
    server: Pop3Server = pop3_env.run(start_pop3(
        settings, pop3_env.session_factory, authenticator, pop3_env.clock))
    pop3_env.extra_servers.append(server)
    yield server


@pytest.mark.parametrize("command", [b"RETR \xc2\xb2", b"LIST \xc2\xb2", b"DELE \xc2\xb2",
                                     b"TOP 1 \xc2\xb2", b"TOP \xd9\xa1 1", b"UIDL \xef\xbc\x91"])
def test_unicode_digits_are_no_message_number(pop3_env: Pop3Env, command: bytes) -> None:
    """``"²".isdigit()`` is True but ``int("²")`` raises: the session used to answer
    ``-ERR internal server error`` and drop the connection."""
    pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, b"From: a@example.com\r\nSubject: s\r\n\r\nhello\r\n")
    sock, reader = open_from(pop3_env.port, "127.0.0.1")
    assert reader.readline().startswith(b"+OK")
    ask(sock, reader, f"USER {ADDRESS}".encode())
    assert ask(sock, reader, f"PASS {PASSWORD}".encode()).startswith(b"+OK")
    reply = ask(sock, reader, command)
    assert reply.startswith(b"-ERR") and b"internal" not in reply
    # The session is still there and the message still retrievable by its ASCII number.
    assert ask(sock, reader, b"RETR 1").startswith(b"+OK")
    assert b"hello\r\n" in multiline(reader)
    assert ask(sock, reader, b"QUIT").startswith(b"+OK")
    sock.close()


def test_one_client_ip_gets_its_share_and_then_a_temporary_refusal(
    pop3_env: Pop3Env, limited: Pop3Server,
) -> None:
    held = [open_from(limited.port, "127.0.0.2") for _ in range(3)]
    assert all(reader.readline().startswith(b"+OK") for _sock, reader in held)
    sock, reader = open_from(limited.port, "127.0.0.2")
    assert reader.readline().startswith(b"-ERR [SYS/TEMP] too many connections")
    assert reader.readline() == b""
    sock.close()
    other, other_reader = open_from(limited.port, "127.0.0.3")
    assert other_reader.readline().startswith(b"+OK")
    for held_sock, _reader in [*held, (other, other_reader)]:
        held_sock.close()


def test_the_tls_port_tells_a_client_over_the_per_ip_limit_inside_tls(
    pop3_env: Pop3Env, limited: Pop3Server,
) -> None:
    """Decision (docs/security.md, issue 20): a TLS client cannot read a refusal sent
    before the handshake, so one over the per-IP limit gets the handshake and then
    ``-ERR [SYS/TEMP]`` — a mail program shows why instead of a TLS error."""
    context = client_tls_context()
    held = []
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", limited.tls_port), timeout=20,
                                       source_address=("127.0.0.4", 0))
        tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        assert tls.recv(100).startswith(b"+OK")
        held.append(tls)
    raw = socket.create_connection(("127.0.0.1", limited.tls_port), timeout=20,
                                   source_address=("127.0.0.4", 0))
    refused = context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert refused.recv(100).startswith(b"-ERR [SYS/TEMP] too many connections")
    refused.close()
    for tls in held:
        tls.close()


def test_a_full_tls_listener_closes_refused_clients_before_any_handshake(
    pop3_env: Pop3Env,
) -> None:
    """When the listener itself is full, no handshake is spent on a refusal: a flood from
    many addresses never buys our CPU."""
    pop3 = pop3_env.settings.pop3.model_copy(update={"max_connections": 2})
    settings = pop3_env.settings.model_copy(update={"pop3": pop3})
    authenticator = Authenticator(pop3_env.session_factory, pop3_env.hashing, pop3_env.guard)
    full: Pop3Server = pop3_env.run(start_pop3(
        settings, pop3_env.session_factory, authenticator, pop3_env.clock))
    pop3_env.extra_servers.append(full)
    context = client_tls_context()
    held = [context.wrap_socket(socket.create_connection(
        ("127.0.0.1", full.tls_port), timeout=20, source_address=(f"127.0.0.{n}", 0)),
        server_hostname="127.0.0.1") for n in (6, 7)]
    for tls in held:
        assert tls.recv(100).startswith(b"+OK")
    raw = socket.create_connection(("127.0.0.1", full.tls_port), timeout=20,
                                   source_address=("127.0.0.8", 0))
    with pytest.raises((ssl.SSLError, OSError)):
        context.wrap_socket(raw, server_hostname="127.0.0.1").recv(100)
    raw.close()
    for tls in held:
        tls.close()


def test_a_client_that_does_not_log_in_in_time_is_closed(
    pop3_env: Pop3Env, limited: Pop3Server,
) -> None:
    pop3_env.add_address(ADDRESS)
    sock, reader = open_from(limited.port, "127.0.0.5")
    assert reader.readline().startswith(b"+OK")
    assert ask(sock, reader, b"CAPA").startswith(b"+OK")
    multiline(reader)
    assert reader.readline().startswith(b"-ERR [SYS/TEMP] no login in time")
    assert reader.readline() == b""
    sock.close()
    # A client that logs in keeps its session past the deadline.
    sock, reader = open_from(limited.port, "127.0.0.5")
    reader.readline()
    ask(sock, reader, f"USER {ADDRESS}".encode())
    assert ask(sock, reader, f"PASS {PASSWORD}".encode()).startswith(b"+OK")
    time.sleep(1.5)
    assert ask(sock, reader, b"NOOP").startswith(b"+OK")
    sock.close()


def test_a_stream_of_invalid_commands_ends_the_session(pop3_env: Pop3Env) -> None:
    sock, reader = open_from(pop3_env.port, "127.0.0.6")
    reader.readline()
    replies = []
    for n in range(1000):
        sock.sendall(b"BOGUS%d\r\n" % n)
        replies.append(reader.readline())
        if not replies[-1].startswith(b"-ERR unknown command"):
            break
    assert reader.readline() == b""  # closed after its last answer
    assert len(replies) == 20
    assert replies[-1].startswith(b"-ERR too many invalid commands")
    sock.close()


def login_failures(listener: str) -> float:
    return sum(metrics.REGISTRY.get_sample_value(
        "mailplane_login_failures_total", {"listener": listener, "reason": reason}) or 0.0
        for reason in ("wrong_password", "same_password", "locked"))


def test_300_guesses_from_30_addresses_make_a_bounded_log_and_are_all_counted(
    pop3_env: Pop3Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, each failed login was an INFO line (and each refused one two): the log grew
    with the attack.  Now every failure is counted; the log gets the first
    ``FAILED_LOGINS_LOGGED_PER_MINUTE`` of the listener a minute, then one line with the
    count of the rest — never a password, and no more of what was typed than before (the
    guard's lock lines name their counter, for an unknown user the name typed)."""
    now = [0.0]
    # Fresh throttles on a clock of our own (another test may have used the keys).
    monkeypatch.setattr(credentials, "_failed",
                        FailedLogins(logging.getLogger(credentials.__name__),
                                     clock=lambda: now[0]))
    monkeypatch.setattr(login_guard, "_throttled",
                        login_log(logging.getLogger(login_guard.__name__)))
    caplog.set_level(logging.INFO, logger="mailplane")
    pop3_env.add_address(ADDRESS)
    typed = [ADDRESS, "nobody@a01.example.net"]
    before = login_failures("pop3")

    def guess(source: str) -> None:
        """Ten wrong passwords, three a session (the session's limit)."""
        for first in (0, 3, 6, 9):
            sock, reader = open_from(pop3_env.port, source)
            assert reader.readline().startswith(b"+OK")
            for n in range(first, min(first + 3, 10)):
                ask(sock, reader, f"USER {typed[n % 2]}".encode())
                reply = ask(sock, reader, f"PASS guess-{source}-{n}".encode())
                assert reply.startswith(b"-ERR"), reply
            sock.close()

    sources = [f"127.0.{n // 10 + 10}.{n % 10 + 1}" for n in range(30)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(guess, sources))

    assert login_failures("pop3") - before == 300
    lines = [r for r in caplog.records if r.name.startswith("mailplane.auth")]
    per_logger = {name: sum(1 for r in lines if r.name == name)
                  for name in {r.name for r in lines}}
    # The per-attempt lines: exactly one minute's budget for the listener.
    assert per_logger[credentials.__name__] == FAILED_LOGINS_LOGGED_PER_MINUTE
    # The guard's refusals (one budget) and locks (ip, pair, account): each a budget too.
    assert per_logger.get(login_guard.__name__, 0) <= 4 * FAILED_LOGINS_LOGGED_PER_MINUTE
    assert not any("guess-" in r.getMessage() for r in lines)  # no password, ever
    # The per-attempt lines name the listener and the client, not what was typed.
    assert not any(name in r.getMessage() for r in lines for name in typed
                   if r.name == credentials.__name__)

    # A minute later the next failure's line says how many were folded.
    now[0] = 61.0
    caplog.clear()
    guess("127.0.20.1")
    [summary, *_rest] = [r.getMessage() for r in caplog.records
                         if r.name == credentials.__name__]
    assert summary.endswith(f"(and {300 - FAILED_LOGINS_LOGGED_PER_MINUTE} more like it in "
                            "the last 60 s)")
