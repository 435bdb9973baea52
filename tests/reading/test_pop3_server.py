"""POP3 against a real server on free ports, spoken to with the standard library's poplib."""

from __future__ import annotations

import base64
import hashlib
import os
import poplib
import socket
from datetime import timedelta
from typing import cast

import pytest

from mailplane.mailstore.folders import QUARANTINE, SENT, folder_dir
from tests.factories.pop3 import PASSWORD, Pop3Env, client_tls_context

ADDRESS = "taro_1@e06.example.net"


def message(subject: str, body: str = "Hello.\n") -> bytes:
    return f"From: a@example.com\nTo: {ADDRESS}\nSubject: {subject}\n\n{body}".encode()


def connect(env: Pop3Env) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", env.port, timeout=30)


def login(env: Pop3Env, user: str, password: str = PASSWORD) -> poplib.POP3:
    client = connect(env)
    client.user(user)
    client.pass_(password)
    return client


def wire(data: bytes) -> bytes:
    """The message as POP3 must deliver it: CRLF line endings."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_login_by_pop_account_and_by_address_case_insensitive(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, message("one"))
    for user in (pop_account, ADDRESS, ADDRESS.upper()):
        client = login(pop3_env, user)
        assert client.stat()[0] == 1
        client.quit()


def test_wrong_password_is_refused_with_auth_code(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    client = connect(pop3_env)
    client.user(pop_account)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]") as wrong:
        client.pass_("not-the-password")
    client.user("m9999999")
    with pytest.raises(poplib.error_proto) as unknown:
        client.pass_("not-the-password")
    # An unknown user gets exactly the same answer: existence is never revealed.
    assert unknown.value.args == wrong.value.args
    client.close()


@pytest.mark.parametrize(("status", "contract_status"),
                         [("suspended", "active"), ("active", "suspended")])
def test_suspended_address_or_contract_is_refused_at_pass(
    pop3_env: Pop3Env, status: str, contract_status: str
) -> None:
    pop_account = pop3_env.add_address(ADDRESS, status=status, contract_status=contract_status)
    client = connect(pop3_env)
    client.user(pop_account)
    with pytest.raises(poplib.error_proto, match="suspended"):
        client.pass_(PASSWORD)
    client.close()


def test_stat_list_uidl_report_crlf_sizes_and_maildir_unique_names(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    first = message("first", "line one\nline two\n")  # LF endings are sent as CRLF
    second = wire(message("second", "x" * 100 + "\n"))
    uid1 = pop3_env.deliver(ADDRESS, first)
    uid2 = pop3_env.deliver(ADDRESS, second)
    client = login(pop3_env, pop_account)
    assert client.stat() == (2, len(wire(first)) + len(second))
    assert client.list()[1] == [f"1 {len(wire(first))}".encode(),
                                f"2 {len(second)}".encode()]
    # typeshed says a tuple, but LIST n returns the single response line
    assert cast(bytes, client.list(2)).split() == [b"+OK", b"2", str(len(second)).encode()]
    assert client.uidl()[1] == [f"1 {uid1}".encode(), f"2 {uid2}".encode()]
    assert client.uidl(1).split()[2] == uid1.encode()
    assert b"".join(line + b"\r\n" for line in client.retr(1)[1]) == wire(first)
    client.quit()
    # Seen mail moved new/ → cur/ (Maildir semantics); the UIDL stays the unique name.
    assert not os.listdir(pop3_env.maildir(ADDRESS) / "new")
    client = login(pop3_env, pop_account)
    assert client.uidl()[1] == [f"1 {uid1}".encode(), f"2 {uid2}".encode()]
    client.quit()


def test_no_such_message_and_state_errors(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, message("one"))
    client = connect(pop3_env)
    with pytest.raises(poplib.error_proto, match="not valid in this state"):
        client.stat()
    client.user(pop_account)
    client.pass_(PASSWORD)
    for bad in ("0", "2", "x"):
        with pytest.raises(poplib.error_proto, match="no such message"):
            client.retr(bad)
    client.quit()


def test_top_returns_headers_blank_line_and_requested_body_lines(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, message("top", "b1\nb2\nb3\n"))
    client = login(pop3_env, pop_account)
    lines = client.top(1, 2)[1]
    assert lines == [b"From: a@example.com", f"To: {ADDRESS}".encode(), b"Subject: top",
                     b"", b"b1", b"b2"]
    assert client.top(1, 0)[1][-1] == b""
    assert client.top(1, 99)[1][-3:] == [b"b1", b"b2", b"b3"]
    client.quit()


def test_dele_is_applied_only_at_quit(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, message("one"))
    pop3_env.deliver(ADDRESS, message("two"))
    client = login(pop3_env, pop_account)
    client.dele(1)
    assert client.stat()[0] == 1
    assert [line.split()[0] for line in client.list()[1]] == [b"2"]
    with pytest.raises(poplib.error_proto, match="already deleted"):
        client.retr(1)
    # Dropping the connection without QUIT deletes nothing (RFC 1939 §6).
    client.close()
    assert len(os.listdir(pop3_env.maildir(ADDRESS) / "cur")) == 2

    client = login(pop3_env, pop_account)
    client.dele(1)
    assert len(os.listdir(pop3_env.maildir(ADDRESS) / "cur")) == 2
    client.quit()
    client = login(pop3_env, pop_account)
    assert client.stat()[0] == 1
    assert b"Subject: two" in client.retr(1)[1]
    client.quit()


def test_rset_restores_messages_marked_deleted(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, message("one"))
    pop3_env.deliver(ADDRESS, message("two"))
    client = login(pop3_env, pop_account)
    client.dele(1)
    client.dele(2)
    assert client.stat()[0] == 0
    assert client.rset().startswith(b"+OK maildrop has 2 messages")
    client.quit()
    client = login(pop3_env, pop_account)
    assert client.stat()[0] == 2
    client.quit()


def test_dot_stuffing_round_trip(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    body = ".starts with a dot\n..two dots\n.\nlast line without newline ."
    data = message("dots", body)
    pop3_env.deliver(ADDRESS, data)
    client = login(pop3_env, pop_account)
    size = client.stat()[1]
    # poplib removes the stuffing again, as every client does.
    lines = client.retr(1)[1]
    got = b"".join(line + b"\r\n" for line in lines)
    assert got == wire(data) + b"\r\n"
    assert size == len(got)
    # And on the wire the lines really were stuffed.
    client.sock.sendall(b"RETR 1\r\n")
    raw = [client.file.readline().rstrip(b"\r\n") for _ in range(9)]
    assert b"..starts with a dot" in raw and b"...two dots" in raw and b".." in raw
    client.close()


def test_large_message_is_retrieved_intact(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    line = b"0123456789abcdefghijklmnopqrstuvwxyz.ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    body = b"".join(b"." + line if i % 7 == 0 else line for i in range(80_000))
    data = message("large") + body  # about 5 MB
    assert len(data) > 5_000_000
    pop3_env.deliver(ADDRESS, data)
    client = login(pop3_env, pop_account)
    response, lines, _octets = client.retr(1)
    got = b"".join(x + b"\r\n" for x in lines)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(wire(data)).hexdigest()
    assert response == f"+OK {len(wire(data))} octets".encode()
    client.quit()


def test_stls_upgrades_the_plain_listener(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, message("tls"))
    client = connect(pop3_env)
    assert "STLS" in client.capa()
    client.stls(context=client_tls_context())
    assert "STLS" not in client.capa()
    client.user(pop_account)
    client.pass_(PASSWORD)
    assert client.stat()[0] == 1
    client.quit()


def test_implicit_tls_listener(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, message("tls"))
    client = poplib.POP3_SSL("127.0.0.1", pop3_env.tls_port, context=client_tls_context(),
                             timeout=30)
    client.user(ADDRESS)
    client.pass_(PASSWORD)
    assert b"Subject: tls" in client.retr(1)[1]
    client.quit()
    assert pop_account


def test_second_session_on_the_same_mailbox_gets_in_use(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    first = login(pop3_env, pop_account)
    second = connect(pop3_env)
    second.user(ADDRESS)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
        second.pass_(PASSWORD)
    first.quit()
    second.user(ADDRESS)
    assert second.pass_(PASSWORD).startswith(b"+OK")
    second.quit()


def test_account_lockout_after_repeated_failures_and_unlock_after_lock_time(
    pop3_env: Pop3Env,
) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    max_failures = pop3_env.settings.security.login_max_failures
    for n in range(max_failures):  # different guesses: the same one again counts once
        client = connect(pop3_env)
        client.user(pop_account)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_(f"wrong-password{n}")
        client.close()
    # Locked: even the right password is refused, and the client is told to come back later.
    client = connect(pop3_env)
    client.user(ADDRESS)
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] too many failed logins"):
        client.pass_(PASSWORD)
    client.close()
    pop3_env.clock.advance(timedelta(seconds=pop3_env.settings.security.login_lock_seconds))
    client = login(pop3_env, pop_account)
    client.quit()


def test_connection_closed_after_three_failed_logins(pop3_env: Pop3Env) -> None:
    pop3_env.add_address(ADDRESS)
    client = connect(pop3_env)
    for _ in range(3):
        client.user("m0000001")
        with pytest.raises(poplib.error_proto):
            client.pass_("wrong-password")
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        client.noop()
    client.close()


def test_capa_lists_what_is_supported(pop3_env: Pop3Env) -> None:
    client = connect(pop3_env)
    caps = client.capa()
    for name in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "STLS"):
        assert name in caps
    assert caps["SASL"] == ["PLAIN"]
    client.quit()


def test_plaintext_login_refused_without_tls_when_not_allowed(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    server = pop3_env.start_another_server(allow_plaintext_auth=False)
    client = poplib.POP3("127.0.0.1", server.port, timeout=30)
    caps = client.capa()
    assert "USER" not in caps and "SASL" not in caps and "STLS" in caps
    with pytest.raises(poplib.error_proto, match="use STLS"):
        client.user(pop_account)
    client.stls(context=client_tls_context())
    client.user(pop_account)
    client.pass_(PASSWORD)
    client.quit()


def test_auth_plain_logs_in(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    client = connect(pop3_env)
    token = base64.b64encode(f"\0{pop_account}\0{PASSWORD}".encode()).decode()
    client.sock.sendall(f"AUTH PLAIN {token}\r\n".encode())
    assert client.file.readline().startswith(b"+OK")
    client.quit()


def test_quarantine_is_never_visible(pop3_env: Pop3Env) -> None:
    pop_account = pop3_env.add_address(ADDRESS)
    pop3_env.deliver(ADDRESS, message("inbox"))
    # The quarantine is the 迷惑メール folder of the same Maildir (SPEC §9b), and so are
    # the webmail's folders: POP3 sees the inbox alone.
    maildir = pop3_env.settings.maildir_root / "e06.example.net" / "taro_1"
    for folder in (QUARANTINE, SENT):
        new = folder_dir(maildir, folder) / "new"
        new.mkdir(parents=True)
        (new / "1763866800.Mq.node1").write_bytes(message("spam"))
    client = login(pop3_env, pop_account)
    assert client.stat()[0] == 1
    assert b"Subject: inbox" in client.retr(1)[1]
    client.quit()


def test_command_line_longer_than_255_octets_is_refused(pop3_env: Pop3Env) -> None:
    with socket.create_connection(("127.0.0.1", pop3_env.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        sock.sendall(b"USER " + b"a" * 300 + b"\r\n")
        assert reader.readline().startswith(b"-ERR line too long")
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"+OK")


def test_idle_client_is_logged_out(pop3_env: Pop3Env) -> None:
    server = pop3_env.start_another_server(idle_timeout_seconds=0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        assert reader.readline().startswith(b"-ERR autologout")
        assert reader.readline() == b""  # and the connection is closed
