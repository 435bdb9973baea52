"""Submission: who the message says it is from (issue 15).  Outlook shows ``Sender`` as
"on behalf of"; ``Resent-From``/``Resent-Sender`` name who re-sent it — a customer may
put only its own address there, as in From (RFC 6409 §6.1)."""

from __future__ import annotations

import asyncio

import pytest

from tests.factories.submission import (
    SENDER,
    SubmissionEnv,
    auth_plain,
    make_message,
    open_tls,
    send_expect,
)


def submit(env: SubmissionEnv, message: bytes) -> tuple[int, str]:
    with open_tls(env.server.tls_port) as client:
        assert auth_plain(client, SENDER)[0] == 235
        return send_expect(client, message)


def with_header(header: str) -> bytes:
    head, _, body = make_message().partition(b"\r\n\r\n")
    return head + b"\r\n" + header.encode() + b"\r\n\r\n" + body


@pytest.mark.parametrize("header", [
    "Sender: boss@bigcorp.example",
    "Sender: Taro <taro_1@e06.example.net>, other@bigcorp.example",
    "Resent-From: ceo@bank.example",
    "Resent-Sender: ceo@bank.example",
    "Sender: undisclosed",
])
async def test_a_foreign_sender_or_resent_header_is_refused(
    sub: SubmissionEnv, header: str,
) -> None:
    code, text = await asyncio.to_thread(submit, sub, with_header(header))
    assert (code, text[:5]) == (553, "5.7.1")


@pytest.mark.parametrize("header", ["Sender: Taro <TARO_1@e06.example.net>",
                                    "Resent-From: taro_1@e06.example.net"])
async def test_the_customers_own_address_there_is_fine(sub: SubmissionEnv, header: str) -> None:
    assert await asyncio.to_thread(submit, sub, with_header(header)) == (250, "accepted")


async def test_a_mime_bomb_is_refused_at_submission_too(sub: SubmissionEnv) -> None:
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n'
                       % (i, i) for i in range(3000))
    head, _, _body = make_message().partition(b"\r\n\r\n")
    bomb = head + b"\r\nMIME-Version: 1.0\r\n" + opening + b"Content-Type: text/plain\r\n\r\nx\r\n"
    code, text = await asyncio.to_thread(submit, sub, bomb)
    assert (code, text[:5]) == (554, "5.6.0")
