"""SPEC §5 end to end: inbox mail forwarded with SRS, bounces reversed, loops ended."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from typing import Any

import pytest

from mailplane.mail.srs import Srs
from tests.factories.dns import DnsStub
from tests.factories.flow import FLOW_MX_SETTINGS, Flow, senders_authenticated
from tests.factories.mx import GTUBE, make_message
from tests.factories.outbound import SRS_DOMAIN, SRS_SECRET


@pytest.fixture
def mx_settings_overrides(dns_stub: DnsStub) -> dict[str, Any]:
    """The flow tests' MX settings (a known SRS secret and domain); Alice passes SPF."""
    return {**FLOW_MX_SETTINGS, **senders_authenticated(dns_stub, "sender.example")}

TARO = "taro_1@e06.example.net"
DESTINATIONS = ["a@dest-one.example", "b@dest-two.example", "c@dest-one.example"]


async def test_inbox_mail_goes_to_three_destinations_with_srs_and_a_kept_copy(
    flow: Flow,
) -> None:
    one = flow.remote("dest-one.example", "127.0.0.2")
    two = flow.remote("dest-two.example", "127.0.0.3")
    flow.set_forwarding(TARO, DESTINATIONS, keep_copy=True)
    await flow.mx.send(make_message(subject="[ML] hello"), mail_from="alice@sender.example")
    assert len(flow.mx.inbox(TARO)) == 1
    await flow.drain()
    delivered = one.envelopes + two.envelopes
    assert sorted(r for e in delivered for r in e.rcpt_tos) == sorted(DESTINATIONS)
    for envelope in delivered:
        assert envelope.mail_from.lower().startswith("srs0=")
        assert envelope.mail_from.lower().endswith("@" + SRS_DOMAIN)
        message = message_from_bytes(envelope.data)
        assert message["Subject"] == "[ML] hello"
        assert message["Delivered-To"] == TARO


async def test_keep_copy_off_forwards_without_storing(flow: Flow) -> None:
    capture = flow.remote("dest-one.example")
    flow.set_forwarding(TARO, ["a@dest-one.example"], keep_copy=False)
    await flow.mx.send(make_message())
    assert flow.mx.inbox(TARO) == []
    await flow.drain()
    assert [e.rcpt_tos for e in capture.envelopes] == [["a@dest-one.example"]]


async def test_forwarded_copy_has_no_spam_tag_though_the_inbox_copy_does(flow: Flow) -> None:
    """The copy is forwarded as received (DKIM survives); mail judged spam goes only to
    destinations on the platform, which judge it by their own settings (issue 20)."""
    capture = flow.remote("dest-one.example")
    hanako = flow.mx.add_address("hanako_2@e07.example.net")  # her spam judge is OFF
    flow.mx.update_address(TARO, spam_judge=True)
    flow.set_forwarding(TARO, ["a@dest-one.example", hanako], keep_copy=True)
    await flow.mx.send(make_message(subject="offer", body=GTUBE.decode() + "\r\n"))
    assert b"Subject: [spam] offer" in flow.mx.inbox(TARO)[0]
    [copy] = flow.mx.inbox(hanako)
    assert message_from_bytes(copy)["Subject"] == "offer"
    assert await flow.drain() == 0
    assert capture.envelopes == []


async def test_quarantined_mail_is_not_forwarded(flow: Flow) -> None:
    capture = flow.remote("dest-one.example")
    flow.mx.update_address(TARO, spam_judge=True, spam_quarantine=True)
    flow.set_forwarding(TARO, ["a@dest-one.example"], keep_copy=False)
    await flow.mx.send(make_message(body=GTUBE.decode() + "\r\n"))
    assert len(flow.mx.quarantine_files(TARO)) == 1
    assert await flow.drain() == 0
    assert capture.envelopes == []


async def test_bounce_to_the_srs_address_reaches_the_original_sender(flow: Flow) -> None:
    flow.remote("dest-one.example", "127.0.0.2")
    sender_mx = flow.remote("sender.example", "127.0.0.3")
    flow.set_forwarding(TARO, ["a@dest-one.example"], keep_copy=True)
    await flow.mx.send(make_message(), mail_from="alice@sender.example")
    await flow.drain()
    srs = Srs(secret=SRS_SECRET, domain=SRS_DOMAIN, now=flow.mx.clock.now)
    rewritten = srs.forward("alice@sender.example")
    bounce = (b"From: MAILER-DAEMON@dest-one.example\r\nTo: " + rewritten.encode()
              + b"\r\nSubject: Undelivered Mail\r\n\r\n<a@dest-one.example>: User unknown"
              b"\r\n")
    await flow.mx.send(bounce, mail_from="", rcpt_tos=[rewritten])
    await flow.drain()
    assert [(e.mail_from, e.rcpt_tos) for e in sender_mx.envelopes] == [
        ("", ["alice@sender.example"])]


async def test_forged_srs_address_is_refused_at_rcpt(flow: Flow) -> None:
    code, _text = await flow.mx.send_expect_error(
        b"Subject: x\r\n\r\nx\r\n", mail_from="",
        rcpt_tos=[f"SRS0=AAAA=AA=sender.example=alice@{SRS_DOMAIN}"])
    assert code == 550


async def test_forwarding_loop_between_two_hosted_addresses_ends(flow: Flow) -> None:
    """A→B→A: one expansion per message — A has its copy already, so B's forward to A
    adds nothing (issue 20; before, the copy came back to A a second time)."""
    hanako = flow.mx.add_address("hanako_2@e07.example.net")
    flow.set_forwarding(TARO, [hanako], keep_copy=True)
    flow.set_forwarding(hanako, [TARO], keep_copy=True)
    # Our own hosted domains resolve to our MX.
    for domain in ("e06.example.net", "e07.example.net"):
        flow.dns.zone[domain] = {"MX": [(10, "mx.example.net")]}
    flow.dns.zone["mx.example.net"] = {"A": ["127.0.0.1"]}
    flow.worker.mx_port = flow.mx.port
    await flow.mx.send(make_message())
    for _ in range(6):
        await flow.drain()
        await asyncio.sleep(0)
    # One copy each, nothing queued, and nothing looked up in DNS.
    assert len(flow.mx.inbox(TARO)) == 1
    assert len(flow.mx.inbox(hanako)) == 1
    assert await flow.drain() == 0
    assert [q for q in flow.dns.queries if "example.net" in q[0]] == []
