"""Hostile content over a real MX socket (issue 15): subjects that broke the auto-reply for
every recipient, an SRS address used as an open relay, deep MIME trees, and values that
reach a quarantine index or digest."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

import pytest

from mailplane.clock import FrozenClock
from mailplane.mail.srs import srs_from_settings
from mailplane.notices.digest import send_quarantine_digests
from tests.factories.dns import DnsStub
from tests.factories.flow import FLOW_MX_SETTINGS, Flow, senders_authenticated
from tests.factories.messages import message
from tests.factories.mx import EICAR, MxEnv

TARO = "taro_1@e06.example.net"
JIRO = "jiro_2@e06.example.net"


@pytest.fixture
def mx_settings_overrides(dns_stub: DnsStub) -> dict[str, Any]:
    return {**FLOW_MX_SETTINGS, "mx": {"max_mime_depth": 40, "max_mime_parts": 200},
            **senders_authenticated(dns_stub, "victim.example")}


def deep(levels: int, leaf: bytes = b"hello", *, to: str = TARO) -> bytes:
    """``levels`` nested multiparts around one text leaf (a MIME bomb at 3,000)."""
    head = (f"From: alice@sender.example\r\nTo: {to}\r\nSubject: deep\r\n"
            "MIME-Version: 1.0\r\n").encode()
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n'
                       % (i, i) for i in range(levels))
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(levels)))
    return (head + opening + b"Content-Type: text/plain\r\n\r\n" + leaf + closing
            + b"\r\n")


# --- auto-reply subjects --------------------------------------------------------------


@pytest.mark.parametrize("subject", [b"Hello\x0cthere", b"Hello\x0bthere",
                                     "Hello\u2028there".encode(), b"caf\xe9 cr\xe8me",
                                     b"=?utf-8?q?Hello=0Cthere?=", b"=?iso-8859-1?q?caf=E9?="])
async def test_a_subject_no_reply_header_can_carry_fails_no_recipient(
    flow: Flow, subject: bytes,
) -> None:
    """The auto-reply of one recipient is built from any Subject; the message is delivered
    to every recipient (it used to be 451 for all of them)."""
    flow.mx.add_address(JIRO)
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="Away until Monday.\n")
    raw = message(to=f"{TARO}, {JIRO}", subject="PLACEHOLDER").replace(
        b"PLACEHOLDER", subject)
    assert await flow.mx.send(raw, rcpt_tos=(TARO, JIRO)) == {}
    assert len(flow.mx.inbox(TARO)) == 1 and len(flow.mx.inbox(JIRO)) == 1
    await flow.drain()
    [reply] = sender_mx.envelopes
    parsed = message_from_bytes(reply.data, policy=policy.default)
    reply_subject = str(parsed["Subject"])
    assert reply_subject.startswith("Re: Hello") or reply_subject.startswith("Re: caf")
    assert not any(c in reply_subject for c in "\x0b\x0c\u2028\r\n")


# --- SRS ------------------------------------------------------------------------------


async def test_an_srs_address_takes_only_bounces(flow: Flow) -> None:
    """A forwarding address hands out SRS addresses; anything but a bounce of the forward
    sent to one would be relayed to the original sender (an open relay).  An SRS address
    we never emitted — a valid hash is not enough — takes nothing (issue 20)."""
    victim = flow.remote("victim.example", "127.0.0.3")
    destination = flow.remote("dest.example", "127.0.0.2")
    srs = srs_from_settings(flow.mx.settings, flow.mx.clock)
    never_emitted = srs.forward("carol@victim.example")
    bounce = message(sender="MAILER-DAEMON@dest.example", to=never_emitted,
                     subject="Undelivered Mail Returned to Sender",
                     body="<friend@dest.example>: user unknown\r\n")
    code, text = await flow.mx.send_expect_error(bounce, mail_from="",
                                                 rcpt_tos=(never_emitted,))
    assert (code, text[:5]) == (550, "5.1.1")

    flow.set_forwarding(TARO, ["friend@dest.example"], keep_copy=True)
    await flow.mx.send(message(sender="bob@victim.example"), mail_from="bob@victim.example")
    await flow.drain()
    srs_address = destination.envelopes[0].mail_from
    spam = message(sender="spammer@bad.example", to=srs_address, subject="Buy now")
    code, text = await flow.mx.send_expect_error(spam, mail_from="spammer@bad.example",
                                                 rcpt_tos=(srs_address,))
    assert (code, text[:5]) == (550, "5.7.1")
    assert await flow.mx.send(bounce, mail_from="", rcpt_tos=(srs_address,)) == {}
    await flow.drain()
    assert [e.rcpt_tos for e in victim.envelopes] == [["bob@victim.example"]]
    assert victim.envelopes[0].mail_from == ""


# --- MIME bounds ----------------------------------------------------------------------


async def test_a_mime_bomb_is_refused_once_with_554(mx: MxEnv) -> None:
    """3,000 nested multiparts with an EICAR leaf: refused for good at DATA, not 451 for
    ever (RecursionError in the virus report), and nothing is stored."""
    code, text = await mx.send_expect_error(deep(3000, EICAR))
    assert (code, text[:5]) == (554, "5.6.0")
    assert mx.inbox(TARO) == [] and mx.tmp_files(TARO) == []


async def test_a_deep_clean_message_to_a_spam_judged_address_is_refused_with_554(
    mx: MxEnv,
) -> None:
    mx.update_address(TARO, spam_judge=True)
    code, text = await mx.send_expect_error(deep(3000))
    assert (code, text[:5]) == (554, "5.6.0")


async def test_a_message_just_within_the_bounds_goes_through_every_walker(mx: MxEnv) -> None:
    """At the configured depth the virus report (parse, neutralise, re-serialise) and the
    spam engine still work."""
    mx.update_address(TARO, spam_judge=True)
    assert await mx.send(deep(38, EICAR)) == {}
    [report] = mx.inbox(TARO)
    assert b"Eicar" in report or b"EICAR" not in report
    assert EICAR not in report
    assert await mx.send(deep(38)) == {}
    assert len(mx.inbox(TARO)) == 2


async def test_too_many_parts_are_refused_too(mx: MxEnv) -> None:
    parts = b"".join(b"--wide\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n
                     for n in range(300))
    wide = (f"From: alice@sender.example\r\nTo: {TARO}\r\nSubject: wide\r\n"
            'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="wide"\r\n'
            "\r\n").encode() + parts + b"--wide--\r\n"
    code, text = await mx.send_expect_error(wide)
    assert (code, text[:5]) == (554, "5.6.0")


# --- values copied into an index or a digest ------------------------------------------


async def test_quarantined_mail_with_hostile_headers_is_indexed_and_digested(
    mx: MxEnv,
) -> None:
    """A deny-listed sender with control characters and Latin-1 bytes in Subject and From:
    the quarantine row is written (SQLite would refuse undecodable text) and the digest is
    built and delivered."""
    mx.update_address(TARO, spam_notify=True, spam_judge=True)
    mx.set_list(TARO, "deny_address", ["bad.example"])
    raw = message(sender="x@bad.example", subject="PLACEHOLDER").replace(
        b"PLACEHOLDER", b"caf\xe9\x0c\x0b \xe2\x80\xa8 \x1b[31mred")
    assert await mx.send(raw, mail_from="x@bad.example") == {}
    assert len(mx.quarantine_files(TARO)) == 1
    clock = FrozenClock()
    assert send_quarantine_digests(mx.settings, mx.session_factory, clock) == 1
    [digest] = mx.inbox(TARO)
    assert b"\x0c" not in digest and b"\x1b" not in digest


# --- the quarantine API on a message stored before the bounds -------------------------


def test_quarantine_api_shows_a_deep_or_hostile_message_without_a_500(
    api_factory: Any,
) -> None:
    """A 3,000-deep message (quarantined before the MIME bounds existed, or by another
    path) and one whose headers hold control characters and undecodable bytes: show and
    raw answer 200."""
    from datetime import UTC, datetime

    from mailplane.delivery.quarantine import new_item_id, quarantine_dir, write_item_file
    from mailplane.storage.models import QuarantineItem

    api = api_factory()
    api.create_contract("C0001")
    address = api.create_address("C0001")["address"]["address"]
    hostile = (b"From: =?utf-8?q?a=0Cb?= <x@bad.example>\r\nSubject: caf\xe9\x1b[2J\x0c\r\n"
               b"X-Odd: \xff\xfe\r\n\r\nbody \xe9\x00\r\n")
    ids = []
    for raw in (deep(3000, to=address), hostile):
        now = datetime(2026, 11, 23, tzinfo=UTC)
        item_id = new_item_id(now)
        path = write_item_file(quarantine_dir(api.settings, address), item_id, raw)
        with api.session_factory() as session, session.begin():
            session.add(QuarantineItem(id=item_id, address=address, received_at=now,
                                       sender="x@bad.example", header_from="x\x0c@bad",
                                       subject="caf\x1b[2J", reason="deny", size=len(raw),
                                       path=str(path)))
        ids.append((item_id, raw))
    client = api.operator
    base = f"/v1/contracts/C0001/addresses/{address}/quarantine"
    assert client.get(base).status_code == 200
    for item_id, raw in ids:
        shown = client.get(f"{base}/{item_id}")
        assert shown.status_code == 200, shown.text
        assert "\x0c" not in shown.text
        as_raw = client.get(f"{base}/{item_id}", params={"raw": "true"})
        assert as_raw.status_code == 200 and as_raw.content == raw
