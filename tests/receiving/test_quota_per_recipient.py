"""Issue 20 finding 7, SPEC §8, §8a: one recipient's full mailbox never refuses the message
for the others.

- A mailbox already full, or that the declared ``SIZE=`` would overflow, gets
  ``452 4.2.2`` at its own RCPT; the other recipients get the message.
- A copy that overflows its mailbox at DATA (no ``SIZE=`` declared) is left out; the
  others get the message.  The sender hears of it by DSN only when it can be answered
  (it authenticated: no backscatter to a forged sender); if every recipient is full the
  whole message gets ``452 4.2.2`` and nothing is stored.
- A mailbox under its quota takes a message that ends at most
  ``addresses.quota_grace_percent`` over it (Dovecot's ``quota_grace``), and no more.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from typing import Any

import pytest
from sqlalchemy import select

from mailplane.mail.auth_results import AuthResults
from mailplane.mail.message import MessageContext
from mailplane.metrics import REGISTRY
from mailplane.storage.models import OutboundJob
from tests.factories.flow import Flow, flow_settings_on
from tests.factories.mx import MxEnv, make_message

TARO = "taro_1@e06.example.net"
SMALL = "small_3@e06.example.net"
#: A message of about 5 KB: more than SMALL's whole quota.
BIG_BODY = ("z" * 70 + "\r\n") * 70


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return flow_settings_on(request)


async def send_without_size(mx: MxEnv, message: bytes, rcpt_tos: list[str],
                            mail_from: str = "alice@sender.example") -> tuple[int, str]:
    """MAIL FROM without ``SIZE=`` (as a script or a spam tool sends), then DATA; the
    DATA reply."""

    def run() -> tuple[int, str]:
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=30) as client:
            client.ehlo("client.sender.example")
            assert client.mail(mail_from)[0] == 250
            for rcpt in rcpt_tos:
                assert client.rcpt(rcpt)[0] == 250
            code, text = client.data(message)
            return code, text.decode()

    return await asyncio.to_thread(run)


def _overflows(notice: str) -> float:
    return REGISTRY.get_sample_value("mailplane_quota_overflows_total",
                                     {"listener": "mx", "notice": notice}) or 0.0


def _mail(mx: MxEnv, address: str) -> list[bytes]:
    """The inbox without the 90 % quota notice."""
    return [m for m in mx.inbox(address) if b"Auto-Submitted: auto-generated" not in m]


def _jobs(mx: MxEnv) -> list[OutboundJob]:
    with mx.session_factory() as session:
        return list(session.scalars(select(OutboundJob)))


async def test_a_copy_that_overflows_one_mailbox_at_data_is_left_out_the_others_get_it(
    mx: MxEnv,
) -> None:
    mx.add_address(SMALL, quota_bytes=2000)
    dropped_before = _overflows("none")
    code, _text = await send_without_size(mx, make_message(body=BIG_BODY), [TARO, SMALL])
    assert code == 250
    assert len(mx.inbox(TARO)) == 1
    assert mx.inbox(SMALL) == [] and mx.tmp_files(SMALL) == []
    # The MX cannot tell whether alice@sender.example really sent it: no DSN (no
    # backscatter to a forged sender); counted and logged instead.
    assert _jobs(mx) == []
    assert _overflows("none") - dropped_before == 1


async def test_when_every_recipient_is_full_at_data_the_message_is_452_4_2_2(
    mx: MxEnv,
) -> None:
    mx.add_address(SMALL, quota_bytes=2000)
    code, text = await send_without_size(mx, make_message(to=SMALL, body=BIG_BODY), [SMALL])
    assert (code, text.split()[0]) == (452, "4.2.2")
    assert mx.inbox(SMALL) == [] and mx.tmp_files(SMALL) == []


async def test_a_declared_size_that_overflows_one_mailbox_is_452_at_its_rcpt_only(
    mx: MxEnv,
) -> None:
    mx.add_address(SMALL, quota_bytes=2000)
    refused = await mx.send(make_message(body=BIG_BODY), rcpt_tos=[TARO, SMALL])
    assert refused[SMALL][0] == 452 and refused[SMALL][1].startswith(b"4.2.2")
    assert len(mx.inbox(TARO)) == 1 and mx.inbox(SMALL) == []


async def test_a_mailbox_under_quota_takes_a_message_within_the_grace_and_no_more(
    mx: MxEnv,
) -> None:
    mx.add_address(SMALL, quota_bytes=10_000)  # grace 10 %: it may end at 11,000 bytes
    await mx.send(make_message(to=SMALL, body=("f" * 70 + "\r\n") * 115), rcpt_tos=[SMALL])
    [first] = _mail(mx, SMALL)
    assert 8_500 < len(first) < 9_000
    # 9 KB + 1.7 KB passes the quota but not the grace: stored.
    middle = make_message(to=SMALL, body=("m" * 70 + "\r\n") * 20)
    assert await send_without_size(mx, middle, [SMALL]) == (250, "2.0.0 Message accepted "
                                                                 "for delivery")
    assert len(_mail(mx, SMALL)) == 2
    # Now over the quota: full at RCPT.
    code, text = await mx.send_expect_error(make_message(to=SMALL), rcpt_tos=[SMALL])
    assert (code, text.split()[0]) == (452, "4.2.2")
    # And a copy that would pass even the grace is refused at DATA.
    mx.add_address("room_1@e06.example.net", quota_bytes=10_000)
    await mx.send(make_message(to="room_1@e06.example.net", body=("f" * 70 + "\r\n") * 115),
                  rcpt_tos=["room_1@e06.example.net"])
    beyond = make_message(to="room_1@e06.example.net", body=("b" * 70 + "\r\n") * 40)
    code, text = await send_without_size(mx, beyond, ["room_1@e06.example.net"])
    assert (code, text.split()[0]) == (452, "4.2.2")


async def test_a_sender_that_authenticated_gets_a_dsn_for_the_left_out_copy(
    flow: Flow,
) -> None:
    """The MX's inbound check (``MessageContext.auth``) says SPF passed for the sender:
    one DSN (RFC 3464, 5.2.2, headers only) tells it which recipient did not get it."""
    sender_mx = flow.remote("sender.example")
    mx = flow.mx
    mx.add_address(SMALL, quota_bytes=2000)
    snapshot = mx.cache.snapshot
    recipients = [(a, p) for a in (TARO, SMALL) if (p := snapshot.lookup(a)) is not None]
    assert mx.server is not None and len(recipients) == 2
    ctx = MessageContext(mail_from="alice@sender.example", rcpt_tos=(TARO, SMALL),
                         raw=make_message(body=BIG_BODY), received_at=mx.clock.now(),
                         peer_ip="192.0.2.1", helo="client.sender.example", queue_id="q-dsn",
                         auth=AuthResults(spf="pass", spf_domain="sender.example"))
    await mx.server.handler.delivery.deliver(ctx, recipients, protocol="ESMTP",
                                             listener="mx")
    await flow.drain()
    assert len(mx.inbox(TARO)) == 1 and mx.inbox(SMALL) == []
    [dsn] = sender_mx.envelopes
    assert (dsn.mail_from, dsn.rcpt_tos) == ("", ["alice@sender.example"])
    report = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    status = dsn.data.decode("ascii", "replace")
    assert f"Final-Recipient: rfc822; {SMALL}" in status and "Status: 5.2.2" in status
    assert "z" * 70 not in status  # the original's headers only, never its body
