"""SMTP smuggling (RFC 5321 §2.3.8): a payload hiding a second message behind a non-CRLF
end-of-data never becomes two messages.  A bare LF is normalised to CRLF (``mx.bare_newline
= normalize``, Postfix 3.9's default) — the fake end stays inside the one message; a bare
CR is refused with 550 5.6.0."""

from __future__ import annotations

import pytest

from mailplane.mail.message import has_bare_line_ending
from tests.factories.mx import MxEnv

TARO = "taro_1@e06.example.net"

HEAD = (
    b"EHLO attacker.example\r\n"
    b"MAIL FROM:<alice@sender.example>\r\n"
    b"RCPT TO:<taro_1@e06.example.net>\r\n"
    b"DATA\r\n"
    b"From: alice@sender.example\r\nSubject: first\r\n\r\nfirst body\r\n"
)
SMUGGLED = (
    b"MAIL FROM:<admin@victim.example>\r\n"
    b"RCPT TO:<taro_1@e06.example.net>\r\n"
    b"DATA\r\n"
    b"From: admin@victim.example\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
)


@pytest.mark.parametrize(
    "fake_end", [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r\n.\r"],
    ids=["LF.LF", "LF.CRLF", "CR.CR", "CRLF.LF", "CRLF.CR"],
)
async def test_smuggled_second_message_is_never_split_off(mx: MxEnv, fake_end: bytes) -> None:
    payload = HEAD + b"first body" + fake_end + SMUGGLED + b".\r\nQUIT\r\n"
    replies = await mx.raw_session(payload)
    data_replies = [line for line in replies if line[:3] in {"250", "550", "451", "354"}
                    and ("5.6.0" in line or "2.0.0" in line)]
    assert len(data_replies) == 1
    if b"\r" in fake_end.replace(b"\r\n", b""):  # a bare CR: refused, nothing stored
        assert data_replies[0].startswith("550 5.6.0")
        assert mx.inbox(TARO) == []
        return
    # Bare LF only: normalised; the "second message" is text inside the first one.
    assert data_replies[0].startswith("250 2.0.0")
    [stored] = mx.inbox(TARO)
    assert not has_bare_line_ending(stored)
    assert b"first body\r\n" in stored
    assert b"\r\nMAIL FROM:<admin@victim.example>\r\n" in stored
    assert stored.endswith(b"smuggled body\r\n")


async def test_bare_lf_inside_a_line_is_stored_as_crlf(mx: MxEnv) -> None:
    payload = HEAD + b"line one\nline two\r\n.\r\nQUIT\r\n"
    replies = await mx.raw_session(payload)
    assert any(line.startswith("250 2.0.0") for line in replies)
    [stored] = mx.inbox(TARO)
    assert stored.endswith(b"first body\r\nline one\r\nline two\r\n")


async def test_clean_crlf_message_over_raw_socket_is_accepted_once(mx: MxEnv) -> None:
    payload = HEAD + b".\r\nQUIT\r\n"
    replies = await mx.raw_session(payload)
    assert any(line.startswith("250 2.0.0") for line in replies)
    assert len(mx.inbox(TARO)) == 1
