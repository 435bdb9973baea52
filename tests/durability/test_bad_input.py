"""Bad input (issue 7): random SMTP command lines, hostile MIME and random POP3 commands.
Every input gets a well-formed reply (SMTP: a 3-digit code; POP3: ``+OK``/``-ERR``), no reply
carries a traceback, and the server still answers NOOP afterwards.  Bounded runs."""

from __future__ import annotations

import base64
import re
import signal
import smtplib
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.durability.harness import crash_node_on, hosted
from tests.factories.node import Node, build_node

SMTP_REPLY = re.compile(rb"^[2-5][0-9]{2}[ -]")
POP3_REPLY = re.compile(rb"^(\+OK|-ERR)")
LEAKS = (b"Traceback", b'File "', b"Error: (")  # aiosmtpd's handle_exception form
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
VERBS = [b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"RSET", b"NOOP", b"VRFY",
         b"EXPN", b"HELP", b"AUTH", b"STARTTLS", b"BDAT", b"XCLIENT", b""]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    started = crash_node_on(build_node(tmp_path_factory.mktemp("fuzz")))
    yield started
    for client in started.clients:
        client.close()
    started.stop(signal.SIGKILL)


class Wire:
    """A raw line-oriented client: what a fuzzer needs that smtplib would refuse to send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buffer = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def smtp_reply(self) -> list[bytes]:
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def _check_smtp(lines: list[bytes]) -> None:
    for line in lines:
        assert SMTP_REPLY.match(line), line[:200]
        assert not any(leak in line for leak in LEAKS), line[:200]


def _still_answers_smtp(node: Node) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=20) as smtp:
        assert smtp.noop()[0] == 250


command_lines = st.one_of(
    st.builds(lambda v, a: v + b" " + a, st.sampled_from(VERBS), st.binary(max_size=300)),
    st.binary(max_size=2000),
    st.builds(lambda n: b"A" * n, st.integers(900, 70000)),  # overlong
    st.builds(lambda v: v + b"\x00\xff\xfe <x@y>", st.sampled_from(VERBS)),  # NUL, 8-bit
)


@FUZZ
@given(lines=st.lists(command_lines, min_size=1, max_size=5))
def test_random_smtp_command_lines_get_a_reply_code_and_never_crash_the_mx(
    node: Node, lines: list[bytes],
) -> None:
    wire = Wire(node.ports["mx"])
    try:
        _check_smtp(wire.smtp_reply())
        for raw in lines:
            wire.send(raw.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n")
            try:
                reply = wire.smtp_reply()
            except (ConnectionError, OSError):
                break  # the server may hang up on abuse (e.g. 421); it must not crash
            _check_smtp(reply)
            if reply[0].startswith(b"354"):  # DATA accepted: end it
                wire.send(b".\r\n")
                _check_smtp(wire.smtp_reply())
    finally:
        wire.close()
    _still_answers_smtp(node)


def _multipart(depth: int) -> bytes:
    if depth == 0:
        return b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    boundary = f"b{depth}".encode()
    return (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--" + boundary
            + b"\r\n" + _multipart(depth - 1) + b"\r\n--" + boundary + b"--\r\n")


def _many_parts(count: int) -> bytes:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\npart\r\n" for _ in range(count))
    return b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"


HOSTILE_BODIES = {
    "broken base64": b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                     b"@@@not base64!!!\r\n====\r\n",
    "8-bit headers": (
        "Subject: \u58ca\u308c\u305f \udcff\r\nFrom: \u592a\u90ce <t@x.example>\r\n\r\nhi\r\n"
    ).encode("utf-8", "surrogateescape"),
    "raw 8-bit latin1 header": b"Subject: caf\xe9 \xff\xfe\r\n\r\nbody \x80\x81\r\n",
    "1000 parts": _many_parts(1000),
    "deep nesting": _multipart(120),
    "bad charset": b"Content-Type: text/plain; charset=x-unknown-666\r\n\r\nbody\r\n",
    "header without body": b"Subject: only headers",
    "base64 attachment, broken padding": b"Content-Type: multipart/mixed; boundary=Z\r\n\r\n"
        b"--Z\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n" + base64.encodebytes(b"x" * 1000).replace(b"\n", b"\r\n")[:-5]
        + b"\r\n--Z--\r\n",
}


@pytest.mark.parametrize("name", list(HOSTILE_BODIES))
def test_hostile_mime_gets_a_reply_code_and_never_crashes_the_mx(node: Node, name: str) -> None:
    data = b"Message-ID: <" + name.replace(" ", "-").encode() + b"@fuzz.example>\r\n" + \
        HOSTILE_BODIES[name]
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=60) as smtp:
        smtp.ehlo("fuzz.example")
        smtp.mail("f@fuzz.example")
        assert smtp.rcpt(hosted("quarantine"))[0] == 250  # spam judge ON: the engines run
        code, text = smtp.data(data)
        assert 200 <= code < 600 and not any(leak in text for leak in LEAKS), (code, text)
        assert code == 250, (code, text)  # odd but well-formed mail is still delivered
    _still_answers_smtp(node)


def test_a_10_mb_single_line_is_refused_cleanly_and_the_mx_keeps_working(node: Node) -> None:
    """RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets; a 10 MB line is answered
    with a 5xx (not a dropped connection, not a crash), under the 25 MB size limit."""
    wire = Wire(node.ports["mx"])
    try:
        wire.smtp_reply()
        for command in (b"EHLO fuzz.example", b"MAIL FROM:<f@fuzz.example>",
                        b"RCPT TO:<" + hosted("inbox").encode() + b">", b"DATA"):
            wire.send(command + b"\r\n")
            wire.smtp_reply()
        wire.send(b"Subject: long\r\n\r\n" + b"x" * (10 * 1024 * 1024) + b"\r\n.\r\n")
        reply = wire.smtp_reply()
        _check_smtp(reply)
        assert reply[0][:1] in (b"2", b"5"), reply
    finally:
        wire.close()
    _still_answers_smtp(node)


pop3_lines = st.one_of(
    st.builds(lambda v, a: v + b" " + a,
              st.sampled_from([b"USER", b"PASS", b"STAT", b"LIST", b"RETR", b"DELE", b"NOOP",
                               b"RSET", b"TOP", b"UIDL", b"CAPA", b"AUTH", b"STLS", b"APOP",
                               b"XTND", b""]),
              st.binary(max_size=200)),
    st.binary(max_size=300),
)


@FUZZ
@given(lines=st.lists(pop3_lines, min_size=1, max_size=6))
def test_random_pop3_commands_get_ok_or_err_and_never_crash_the_server(
    node: Node, lines: list[bytes],
) -> None:
    wire = Wire(node.ports["pop3"])
    try:
        assert POP3_REPLY.match(wire.line())
        for raw in lines:
            clean = raw.replace(b"\r", b"").replace(b"\n", b"")
            if clean.upper().startswith(b"STLS") or clean.upper().startswith(b"QUIT"):
                continue  # a TLS handshake / goodbye is not a command reply to check
            wire.send(clean + b"\r\n")
            try:
                reply = wire.line()
            except (ConnectionError, OSError):
                break  # closing on abuse (too long, too many failures) is allowed
            assert POP3_REPLY.match(reply), reply[:200]
            assert not any(leak in reply for leak in LEAKS), reply[:200]
            # Multi-line answers: CAPA, and AUTH with no mechanism (any whitespace, as the
            # server strips it) listing the SASL mechanisms (RFC 5034).
            if reply.startswith(b"+OK") and (clean.upper().startswith(b"CAPA")
                                             or reply.startswith(b"+OK SASL mechanisms")):
                while wire.line() != b".":
                    pass
            if reply.startswith(b"+ ") or reply == b"+":
                break
    finally:
        wire.close()
    probe = Wire(node.ports["pop3"])
    try:
        assert probe.line().startswith(b"+OK")
        probe.send(b"NOOP\r\n")
        assert POP3_REPLY.match(probe.line())
    finally:
        probe.close()
