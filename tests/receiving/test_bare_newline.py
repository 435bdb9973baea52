"""Bare LF in inbound DATA (issue 14): accepted and stored as CRLF, like Postfix 3.9's
default ``smtpd_forbid_bare_newline = normalize`` — old senders' mail is not lost — while
DATA still ends only at ``<CRLF>.<CRLF>`` after a CRLF-ended line."""

from __future__ import annotations

import asyncio

from mailplane.mail.message import has_bare_line_ending
from mailplane.smtp.protocol import _DataReader
from tests.factories.mx import MxEnv

TARO = "taro_1@e06.example.net"
HEAD = (
    b"EHLO old.example\r\n"
    b"MAIL FROM:<alice@sender.example>\r\n"
    b"RCPT TO:<taro_1@e06.example.net>\r\n"
    b"DATA\r\n"
)


def _data_replies(replies: list[str]) -> list[str]:
    """The replies after 354 (to the end of DATA), QUIT's 221 left out."""
    after = replies[next(i for i, line in enumerate(replies) if line.startswith("354")) + 1:]
    return [line for line in after if not line.startswith("221")]


async def test_a_long_lf_only_message_is_accepted_and_stored_with_crlf(mx: MxEnv) -> None:
    body = b"".join(b"line %d of an old script's mail\n" % n for n in range(200))
    payload = HEAD + b"From: alice@sender.example\nSubject: report\n\n" + body
    replies = await mx.raw_session(payload + b"\r\n.\r\nQUIT\r\n")
    assert [r[:9] for r in _data_replies(replies)] == ["250 2.0.0"]
    [stored] = mx.inbox(TARO)
    assert not has_bare_line_ending(stored)
    assert b"\r\nSubject: report\r\n\r\nline 0 of" in stored
    assert stored.endswith(b"line 199 of an old script's mail\r\n\r\n")


async def test_a_line_over_the_limit_still_gets_500_when_it_ends_in_a_bare_lf(
    mx: MxEnv,
) -> None:
    payload = HEAD + b"Subject: x\n\n" + b"y" * 1200 + b"\nshort\r\n.\r\nQUIT\r\n"
    replies = await mx.raw_session(payload)
    assert [r[:3] for r in _data_replies(replies)] == ["500"]
    assert mx.inbox(TARO) == []


async def test_lines_after_a_bare_lf_are_dot_unstuffed_and_a_lone_dot_ends_nothing(
    mx: MxEnv,
) -> None:
    payload = HEAD + b"Subject: dots\n\n..leading dot\nbefore\n.\r\nafter\r\n.\r\nQUIT\r\n"
    replies = await mx.raw_session(payload)
    assert [r[:9] for r in _data_replies(replies)] == ["250 2.0.0"]
    [stored] = mx.inbox(TARO)
    # "..x" is the stuffed form of ".x"; the "." after a bare LF is not the end of DATA.
    assert stored.endswith(b"Subject: dots\r\n\r\n.leading dot\r\nbefore\r\n\r\nafter\r\n")


async def test_a_bare_cr_is_still_refused(mx: MxEnv) -> None:
    payload = HEAD + b"Subject: x\r\n\r\none\rtwo\r\n.\r\nQUIT\r\n"
    replies = await mx.raw_session(payload)
    assert any(line.startswith("550 5.6.0") for line in replies)
    assert mx.inbox(TARO) == []


async def test_the_reader_ends_data_only_after_a_crlf_ended_line() -> None:
    """Chunk boundaries cannot help a smuggler: the reader is told whether the lines
    already taken ended in CRLF, so ``.<CRLF>`` right after a bare LF is data."""
    reader = _DataReader(limit=1001)
    reader.feed_data(b"first\n")
    assert await reader.read_data_lines(1001, eol=b"\n") == (b"first\n", False)
    reader.feed_data(b".\r\nsecond\r\n")
    assert await reader.read_data_lines(1001, eol=b"\n", line_start=False) == (
        b".\r\nsecond\r\n", False)
    reader.feed_data(b".\r\nQUIT\r\n")
    assert await reader.read_data_lines(1001, eol=b"\n", line_start=True) == (b"", True)
    assert bytes(reader._buffer) == b"QUIT\r\n"  # nothing read past the end
    await asyncio.sleep(0)
