"""RCPT-time rules and transaction limits (SPEC §1, §8; RFC 5321)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories.mx import MxEnv, make_message

TARO = "taro_1@e06.example.net"


async def test_unknown_address_at_hosted_domain_is_550_5_1_1(mx: MxEnv) -> None:
    code, text = await mx.send_expect_error(make_message(), rcpt_tos=["nobody@e06.example.net"])
    assert (code, text.split()[0]) == (550, "5.1.1")


async def test_domain_not_hosted_is_554_5_7_1_never_an_open_relay(mx: MxEnv) -> None:
    code, text = await mx.send_expect_error(make_message(), rcpt_tos=["bob@elsewhere.example"])
    assert (code, text.split()[0]) == (554, "5.7.1")


async def test_suspended_address_still_accepts_mail(mx: MxEnv) -> None:
    mx.update_address(TARO, status="suspended")
    assert await mx.send(make_message()) == {}
    assert len(mx.inbox(TARO)) == 1


async def test_one_unknown_recipient_does_not_stop_the_others(mx: MxEnv) -> None:
    refused = await mx.send(make_message(), rcpt_tos=[TARO, "ghost@e06.example.net"])
    assert refused["ghost@e06.example.net"][0] == 550
    assert len(mx.inbox(TARO)) == 1


@pytest.fixture
def mx_settings_overrides() -> dict[str, Any]:
    return {"mx": {"max_message_size": 4096}}


async def test_message_over_the_size_limit_is_552_and_not_stored(mx: MxEnv) -> None:
    big = make_message(body="x" * 80 + "\r\n" * 1 + ("y" * 78 + "\r\n") * 60)
    code, text = await mx.send_expect_error(big)
    assert (code, text.split()[0]) == (552, "5.3.4")
    assert mx.inbox(TARO) == []


async def test_message_that_would_exceed_the_quota_is_452_4_2_2(mx: MxEnv) -> None:
    mx.add_address("small_1@e06.example.net", quota_bytes=600)
    code, text = await mx.send_expect_error(
        make_message(body="z" * 70 + "\r\n" + "z" * 70 + "\r\n" * 5 + "w" * 70 * 1 + "\r\n"
                     + "q" * 70 * 1 + "\r\n" + "r" * 70 + "\r\n" + "s" * 70 + "\r\n"),
        rcpt_tos=["small_1@e06.example.net"],
    )
    assert (code, text.split()[0]) == (452, "4.2.2")
    assert mx.inbox("small_1@e06.example.net") == []


async def test_full_mailbox_is_deferred_at_rcpt(mx: MxEnv) -> None:
    mx.add_address("tiny_1@e06.example.net")
    await mx.send(make_message(), rcpt_tos=["tiny_1@e06.example.net"])
    mx.update_address("tiny_1@e06.example.net", quota_bytes=100)  # now over quota
    code, text = await mx.send_expect_error(make_message(), rcpt_tos=["tiny_1@e06.example.net"])
    assert (code, text.split()[0]) == (452, "4.2.2")
    assert len(mx.inbox("tiny_1@e06.example.net")) == 1


async def test_oversize_data_without_declared_size_is_552_5_3_4(mx: MxEnv) -> None:
    payload = (
        b"EHLO client.example\r\nMAIL FROM:<alice@sender.example>\r\n"
        b"RCPT TO:<taro_1@e06.example.net>\r\nDATA\r\nSubject: big\r\n\r\n"
        + b"y" * 78 + b"\r\n" * 1 + (b"z" * 78 + b"\r\n") * 80 + b".\r\nQUIT\r\n"
    )
    replies = await mx.raw_session(payload)
    assert any(line.startswith("552 5.3.4") for line in replies)
    assert mx.inbox(TARO) == []
