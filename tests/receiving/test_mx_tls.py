"""TLS on the MX and what the SMTP edge says about a session (issue 21, SPEC §8b): STARTTLS
with the node's certificate, TLS 1.2 or newer only; a TLS 1.0/1.1 client is refused in one
throttled log line, never a traceback; ``Received`` names the protocol (RFC 3848, RFC 6531)
and never a login; EHLO offers PIPELINING and ENHANCEDSTATUSCODES and every reply then
carries an enhanced status code (RFC 2034).  Over real sockets, with swaks and openssl as
the independent clients."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import warnings
from email import message_from_bytes

import pytest

import mailplane.net.tls
from mailplane import metrics
from mailplane.net.throttled_log import ThrottledLog
from mailplane.smtp import replies
from tests.factories.messages import message
from tests.factories.mx import MxEnv
from tests.factories.submission import (
    NEIGHBOUR,
    SENDER,
    SubmissionEnv,
    auth_plain,
    client_tls_context,
    make_message,
    open_tls,
)

TARO = "taro_1@e06.example.net"
ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ")


@pytest.fixture
def fresh_tls_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh throttle for handshake failures (another test may have used the key)."""
    monkeypatch.setattr(mailplane.net.tls, "_throttled",
                        ThrottledLog(logging.getLogger("mailplane.net.tls")), raising=False)


def handshake_failures(listener: str) -> float:
    value = metrics.REGISTRY.get_sample_value("mailplane_tls_handshake_failures_total",
                                              {"listener": listener})
    return value or 0.0


def old_tls_client() -> ssl.SSLContext:
    """A client that speaks TLS 1.0 and 1.1 only (OpenSSL 3 needs security level 0 for
    them at all)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # deprecated: that is the point of the client
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def stored_received(stored: bytes) -> str:
    return " ".join(str(v) for v in message_from_bytes(stored).get_all("Received", []))


# --- STARTTLS on the MX ------------------------------------------------------------------


async def test_swaks_delivers_over_starttls(mx: MxEnv) -> None:
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed (Debian packages swaks, libnet-ssleay-perl)")
    done = await asyncio.to_thread(
        subprocess.run,
        ["swaks", "--tls", "--server", "127.0.0.1", "--port", str(mx.port),
         "--helo", "client.sender.example", "--from", "alice@sender.example",
         "--to", TARO, "--header", "Subject: over TLS", "--timeout", "20"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TLS started" in done.stdout
    assert re.search(r"<~ +250 2\.0\.0 ", done.stdout)  # the DATA reply, over TLS
    [stored] = mx.inbox(TARO)
    assert " with ESMTPS id " in stored_received(stored)


async def test_openssl_negotiates_tls_1_2_or_newer_and_nothing_older(mx: MxEnv) -> None:
    def s_client(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect",
             f"127.0.0.1:{mx.port}", "-servername", "mx.example.net", "-brief", *extra],
            input="QUIT\r\n", capture_output=True, text=True, timeout=60)

    modern = await asyncio.to_thread(s_client)
    assert modern.returncode == 0, modern.stderr
    version = re.search(r"Protocol version: (TLSv1\.[0-3])", modern.stderr)
    assert version is not None, modern.stderr
    assert version[1] in ("TLSv1.2", "TLSv1.3")
    for old in ("-tls1", "-tls1_1"):
        refused = await asyncio.to_thread(s_client, old, "-cipher", "DEFAULT@SECLEVEL=0")
        assert refused.returncode != 0
        assert "Protocol version" not in refused.stderr


async def test_a_tls_1_0_client_is_refused_in_one_log_line_without_a_traceback(
    mx: MxEnv, caplog: pytest.LogCaptureFixture, fresh_tls_log: None,
) -> None:
    caplog.set_level(logging.INFO)
    before = handshake_failures("mx")

    def attempt() -> None:
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=20) as client:
            client.ehlo("old.example")
            with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, OSError)):
                client.starttls(context=old_tls_client())

    def modern() -> int:  # the MX still serves, in TLS too
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=20) as client:
            client.ehlo("new.example")
            code, _ = client.starttls(context=client_tls_context())
            return code

    for _ in range(5):
        await asyncio.to_thread(attempt)
    assert await asyncio.to_thread(modern) == 220
    assert handshake_failures("mx") == before + 5
    lines = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "mx" in lines[0].getMessage() and "127.0.0.1" in lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_received_names_the_protocol_as_negotiated(mx: MxEnv) -> None:
    def send(*, tls: bool, helo: bool = False, utf8: bool = False) -> None:
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=20) as client:
            if helo:
                client.helo("client.sender.example")
            else:
                client.ehlo("client.sender.example")
            if tls:
                client.starttls(context=client_tls_context())
                client.ehlo("client.sender.example")
            sender = "たろう@sender.example" if utf8 else "alice@sender.example"
            client.sendmail(sender, [TARO], message(subject="trace"),
                            mail_options=["SMTPUTF8"] if utf8 else [])

    await asyncio.to_thread(send, tls=False, helo=True)
    await asyncio.to_thread(send, tls=False)
    await asyncio.to_thread(send, tls=True)
    await asyncio.to_thread(send, tls=True, utf8=True)
    keywords = [re.search(r" with (\S+) id ", stored_received(m))[1]  # type: ignore[index]
                for m in mx.inbox(TARO)]
    assert sorted(keywords) == sorted(["SMTP", "ESMTP", "ESMTPS", "UTF8SMTPS"])


async def test_the_mx_offers_no_auth_even_over_tls(mx: MxEnv) -> None:
    """The MX relays for nobody: customers authenticate on submission, so port 25 neither
    offers AUTH after STARTTLS nor takes it (a 535 there would be a free password
    oracle's answer; 504 says there is no such thing here)."""
    def session() -> tuple[bool, int]:
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=20) as client:
            client.ehlo("client.sender.example")
            client.starttls(context=client_tls_context())
            client.ehlo("client.sender.example")
            offered = client.has_extn("auth")
            code, _ = client.docmd("AUTH", "PLAIN AG0wMDAwMDAxAHg=")
            return offered, code

    offered, code = await asyncio.to_thread(session)
    assert not offered
    assert code == 504


# --- EHLO, pipelining, enhanced status codes ---------------------------------------------


def _replies(sock: socket.socket, count: int) -> list[str]:
    """The next ``count`` complete replies (multi-line replies joined)."""
    reader = sock.makefile("rb")
    out: list[str] = []
    while len(out) < count:
        lines = [reader.readline().decode()]
        while lines[-1][3:4] == "-":
            lines.append(reader.readline().decode())
        out.append("".join(lines))
    return out


async def test_ehlo_offers_pipelining_and_enhanced_codes_and_a_batch_is_answered_in_order(
    mx: MxEnv,
) -> None:
    def run() -> tuple[str, list[str]]:
        with socket.create_connection(("127.0.0.1", mx.port), timeout=20) as sock:
            _replies(sock, 1)  # greeting
            sock.sendall(b"EHLO client.sender.example\r\n")
            [ehlo] = _replies(sock, 1)
            sock.sendall(  # RFC 2920: one write, every reply in order
                b"MAIL FROM:<alice@sender.example>\r\n"
                b"RCPT TO:<taro_1@e06.example.net>\r\n"
                b"RCPT TO:<nobody@e06.example.net>\r\n"
                b"RCPT TO:<someone@elsewhere.example>\r\n"
                b"DATA\r\n")
            answers = _replies(sock, 5)
            sock.sendall(message(subject="pipelined") + b".\r\n"
                         b"NOOP\r\nRSET\r\nMAIL TO:<x@y>\r\nRCPT TO:<x@y>\r\nDATA x\r\n"
                         b"FROBNICATE\r\nSTARTTLS now\r\nQUIT\r\n")
            answers += _replies(sock, 9)
        return ehlo, answers

    ehlo, answers = await asyncio.to_thread(run)
    offered = [line[4:].strip() for line in ehlo.splitlines()]
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS", "8BITMIME",
            "SMTPUTF8"} <= set(offered)
    assert [a[:9] for a in answers] == [
        "250 2.1.0", "250 2.1.5", "550 5.1.1", "554 5.7.1", "354 End d",
        "250 2.0.0", "250 2.0.0", "250 2.0.0", "501 5.5.4", "503 5.5.1", "503 5.5.1",
        "500 5.5.2", "501 5.5.4", "221 2.0.0"]
    assert len(mx.inbox(TARO)) == 1
    assert all(ENHANCED.match(a) for a in answers if not a.startswith("354"))


def test_every_named_reply_carries_an_enhanced_code_of_its_class() -> None:
    named = {name: value for name, value in vars(replies).items()
             if isinstance(value, replies.SmtpReply)}
    assert len(named) > 30
    for name, reply in named.items():
        assert ENHANCED.match(reply.line), name
        assert reply.status[0] == str(reply.code)[0], name


def test_stock_replies_get_the_enhanced_code_rfc_3463_gives_them() -> None:
    add = replies.with_enhanced_code
    assert add("250 OK", "MAIL") == "250 2.1.0 OK"
    assert add("250 OK", "RCPT") == "250 2.1.5 OK"
    assert add("250 OK", "NOOP") == "250 2.0.0 OK"
    assert add("503 Error: need RCPT command", "DATA") == "503 5.5.1 Error: need RCPT command"
    assert add("220 Ready to start TLS", "STARTTLS") == "220 2.0.0 Ready to start TLS"
    assert add("250 HELP", "EHLO") == "250 HELP"  # RFC 2034: not the EHLO answer ...
    assert add("220 mx.example.net mailplane", None) == "220 mx.example.net mailplane"
    assert add("354 End data with <CR><LF>.<CR><LF>", "DATA").startswith("354 End")
    assert add("334 VXNlcm5hbWU6", "AUTH") == "334 VXNlcm5hbWU6"  # ... nor a challenge
    assert add("452 4.5.3 Too many", "RCPT") == "452 4.5.3 Too many"  # already has one


# --- submission: the same trace rules ----------------------------------------------------


async def test_submission_received_says_esmtpsa_or_utf8smtpsa_and_no_login(
    sub: SubmissionEnv,
) -> None:
    def run(utf8: bool) -> None:
        with open_tls(sub.server.tls_port) as client:
            assert client.has_extn("pipelining") and client.has_extn("enhancedstatuscodes")
            assert auth_plain(client, SENDER)[0] == 235
            client.sendmail(SENDER, [NEIGHBOUR], make_message(subject="trace"),
                            mail_options=["SMTPUTF8"] if utf8 else [])

    await asyncio.to_thread(run, False)
    await asyncio.to_thread(run, True)
    pop_account = sub.cache.snapshot.lookup(SENDER).pop_account  # type: ignore[union-attr]
    stored = sub.inbox(NEIGHBOUR)
    keywords = sorted({k for m in stored
                       for k in re.findall(r" with (\S+) id ", stored_received(m))})
    assert keywords == ["ESMTPSA", "UTF8SMTPSA"]
    assert not any(pop_account.encode() in m or b"authenticated user" in m for m in stored)


@pytest.mark.parametrize("port_kind", ["starttls", "implicit"])
async def test_a_tls_1_0_client_on_submission_is_one_log_line_without_a_traceback(
    sub: SubmissionEnv, caplog: pytest.LogCaptureFixture, fresh_tls_log: None,
    port_kind: str,
) -> None:
    caplog.set_level(logging.INFO)
    before = handshake_failures("submission")

    def attempt() -> None:
        if port_kind == "starttls":
            with smtplib.SMTP("127.0.0.1", sub.server.starttls_port, timeout=20) as client:
                client.ehlo("old.example")
                with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, OSError)):
                    client.starttls(context=old_tls_client())
        else:
            with pytest.raises((ssl.SSLError, OSError)):
                smtplib.SMTP_SSL("127.0.0.1", sub.server.tls_port, timeout=20,
                                 context=old_tls_client())

    def modern() -> int:
        with open_tls(sub.server.tls_port) as client:
            return client.noop()[0]

    for _ in range(4):
        await asyncio.to_thread(attempt)
    assert await asyncio.to_thread(modern) == 250
    assert handshake_failures("submission") == before + 4
    lines = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(lines) == 1
    assert not any(r.exc_info for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
