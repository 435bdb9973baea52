"""Plain inbound delivery over a real SMTP socket (SPEC §8)."""

from __future__ import annotations

from tests.factories.mx import MxEnv, make_message


async def test_accepted_mail_lands_in_maildir_new_with_trace_headers(mx: MxEnv) -> None:
    refused = await mx.send(make_message())
    assert refused == {}
    [stored] = mx.inbox("taro_1@e06.example.net")
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"Return-Path: <alice@sender.example>\r\n")
    assert b"Delivered-To: taro_1@e06.example.net\r\n" in head
    assert b"X-Mailplane-Verdict: inbox; hits=none" in head
    assert b"Received: from client.sender.example ([127.0.0.1])" in head
    assert stored.endswith(b"How are you?\r\n")
    assert mx.tmp_files("taro_1@e06.example.net") == []
