"""POP3 under hostile clients (issue 15, SPEC §8a), over real sockets: Unicode digits as
message numbers, connection limits per client IP answered ``-ERR [SYS/TEMP]`` at once (on
the TLS port inside TLS, at most 16 handshakes at once; a full listener closes before any
handshake — docs/security.md), and the login deadline."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailplane.auth.credentials import Authenticator
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
