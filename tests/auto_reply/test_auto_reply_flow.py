"""SPEC §6 end to end: one reply per sender per 24 h, shared through the database."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest

from tests.factories.flow import FLOW_MX_SETTINGS, Flow
from tests.factories.mx import EICAR, make_message


@pytest.fixture
def mx_settings_overrides() -> dict[str, Any]:
    """The flow tests' MX settings (a known SRS secret and domain)."""
    return FLOW_MX_SETTINGS

TARO = "taro_1@e06.example.net"


def _reply_text(data: bytes) -> tuple[str, str]:
    message = message_from_bytes(data, policy=policy.default)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(message["Subject"]), body.get_content()


async def test_sender_gets_one_reply_per_24_hours(flow: Flow) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="ただいま不在です。\n")
    await flow.mx.send(make_message(subject="会議の件"))
    await flow.drain()
    assert len(sender_mx.envelopes) == 1
    reply = sender_mx.envelopes[0]
    assert (reply.mail_from, reply.rcpt_tos) == ("", ["alice@sender.example"])
    subject, body = _reply_text(reply.data)
    assert subject == "Re: 会議の件" and body.strip() == "ただいま不在です。"
    headers = message_from_bytes(reply.data)
    assert headers["Auto-Submitted"] == "auto-replied"
    assert headers["In-Reply-To"] == "<test@sender.example>"

    flow.mx.clock.advance(timedelta(hours=23))
    await flow.mx.send(make_message())
    await flow.drain()
    assert len(sender_mx.envelopes) == 1  # still inside the 24 hours
    assert len(flow.mx.inbox(TARO)) == 2  # but the mail itself is delivered

    flow.mx.clock.advance(timedelta(hours=1))
    await flow.mx.send(make_message())
    await flow.drain()
    assert len(sender_mx.envelopes) == 2


async def test_special_senders_get_the_special_message(flow: Flow) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="default text",
                        special_senders=("alice@sender.example",),
                        special_message="special text")
    await flow.mx.send(make_message())
    await flow.drain()
    assert _reply_text(sender_mx.envelopes[0].data)[1].strip() == "special text"


async def test_two_concurrent_deliveries_from_one_sender_get_exactly_one_reply(
    flow: Flow,
) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="away")
    await asyncio.gather(*(flow.mx.send(make_message()) for _ in range(4)))
    await flow.drain()
    assert len(flow.mx.inbox(TARO)) == 4
    assert len(sender_mx.envelopes) == 1


async def test_no_reply_to_list_mail_bounces_or_virus_mail(flow: Flow) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="away")
    await flow.mx.send(make_message(extra_headers="List-Id: <news.sender.example>\r\n"))
    await flow.mx.send(make_message(), mail_from="")
    await flow.mx.send(make_message(body=EICAR.decode() + "\r\n"))
    await flow.mx.send(make_message(extra_headers="Auto-Submitted: auto-generated\r\n"))
    await flow.drain()
    assert sender_mx.envelopes == []
    assert len(flow.mx.inbox(TARO)) == 4
