"""Failed forwards make no backscatter and lose nothing (issue 20, finding 5; SPEC §5;
RFC 3464): a DSN goes only to a sender that authenticated at our MX, carries the
original's headers and never its body, and is rate limited per recipient; a forward that
fails for good with keep-copy OFF comes back to the inbox with a notice.  The queue
delivers to capture servers found through a DNS stub; on SQLite and PostgreSQL.

The MX fills ``MessageContext.auth`` with what it verified (SPF, DKIM; SPEC §8b); these
tests hand the node's delivery the message with the verdict the MX would have reached,
so the rule is tested whatever the sender's DNS says."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from mailplane import metrics
from mailplane.mail.auth_results import AuthResults
from mailplane.mail.message import MessageContext
from tests.factories.flow import FLOW_MX_SETTINGS, Flow
from tests.factories.mx import make_message
from tests.factories.outbound import CaptureMx

TARO = "taro_1@e06.example.net"
ALICE = "alice@sender.example"
DESTINATION = "a@dest-one.example"
SECRET_BODY = "the attacker's text, which must never come back"
FORGED = AuthResults(spf="fail", spf_domain="sender.example", dmarc="fail")
AUTHENTICATED = AuthResults(spf="pass", spf_domain="sender.example")


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        **FLOW_MX_SETTINGS,
        "outbound": {**FLOW_MX_SETTINGS["outbound"], "dsn_per_recipient_per_hour": 2},
    }
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return overrides


async def receive(flow: Flow, auth: AuthResults, subject: str) -> None:
    """A message from Alice for Taro, as the MX hands it on after verifying it."""
    assert flow.mx.server is not None
    policy_ = flow.mx.cache.snapshot.lookup(TARO)
    assert policy_ is not None
    ctx = MessageContext(
        mail_from=ALICE, rcpt_tos=(TARO,), raw=make_message(subject=subject, body=SECRET_BODY),
        received_at=flow.mx.clock.now(), peer_ip="192.0.2.10", helo="mx.sender.example",
        queue_id=f"q-{subject}", auth=auth)
    await flow.mx.server.handler.delivery.deliver(ctx, [(TARO, policy_)], protocol="ESMTP",
                                                  listener="mx")


def failing_forward(flow: Flow) -> CaptureMx:
    """Taro forwards to a destination that refuses it for good; the sender's MX."""
    destination = flow.remote("dest-one.example", "127.0.0.2")
    destination.handler.rcpt_replies[DESTINATION] = "550 5.1.1 no such user"
    flow.set_forwarding(TARO, [DESTINATION], keep_copy=True)
    return flow.remote("sender.example", "127.0.0.3")


def withheld(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("mailplane_dsns_withheld_total",
                                              {"reason": reason})
    return value or 0.0


async def test_a_failed_forward_of_a_forged_sender_draws_no_dsn(flow: Flow) -> None:
    sender_mx = failing_forward(flow)
    before = withheld("unauthenticated")

    await receive(flow, FORGED, "forged")
    await flow.drain()
    assert sender_mx.envelopes == []
    assert withheld("unauthenticated") - before == 1

    await receive(flow, AUTHENTICATED, "genuine")
    await flow.drain()
    [dsn] = sender_mx.envelopes
    assert (dsn.mail_from, dsn.rcpt_tos) == ("", [ALICE])
    report = message_from_bytes(dsn.data, policy=policy.default)
    assert isinstance(report, EmailMessage)
    assert report.get_content_type() == "multipart/report"
    parts = [part.get_content_type() for part in report.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert b"Subject: genuine" in dsn.data  # the original's headers …
    assert SECRET_BODY.encode() not in dsn.data  # … never its body


async def test_dsns_to_one_sender_are_rate_limited(flow: Flow) -> None:
    sender_mx = failing_forward(flow)
    before = withheld("rate_limit")
    for n in range(4):
        await receive(flow, AUTHENTICATED, f"n{n}")
    await flow.drain()
    assert len(sender_mx.envelopes) == 2  # outbound.dsn_per_recipient_per_hour
    assert withheld("rate_limit") - before == 2


@pytest.mark.parametrize("failure", ["user_unknown", "no_such_domain"])
async def test_a_forward_that_fails_for_good_with_keep_copy_off_comes_back_to_the_inbox(
    flow: Flow, failure: str,
) -> None:
    if failure == "user_unknown":
        destination = flow.remote("dest-one.example", "127.0.0.2")
        destination.handler.rcpt_replies[DESTINATION] = "550 5.1.1 no such user"
    flow.set_forwarding(TARO, [DESTINATION], keep_copy=False)  # NXDOMAIN when not set up
    await flow.mx.send(make_message(subject="important", body="keep me\r\n"))
    assert flow.mx.inbox(TARO) == []
    await flow.drain()

    stored = flow.mx.inbox(TARO)
    assert len(stored) == 2
    [kept] = [m for m in stored if b"Subject: important" in m]
    [notice] = [m for m in stored if m is not kept]
    assert b"keep me" in kept
    told = message_from_bytes(notice, policy=policy.default)
    assert isinstance(told, EmailMessage)
    assert str(told["Subject"]).startswith("【転送できなかったメールのお知らせ】")
    body = told.get_body()
    assert body is not None
    text = body.get_content()
    assert text.index("転送先に配信できませんでした") < text.index("(English)")
    assert DESTINATION in text and "important" in text
    assert await flow.drain() == 0


async def test_a_bounce_to_the_srs_address_of_a_forged_senders_forward_is_refused(
    flow: Flow,
) -> None:
    """The forward itself goes out (the message was for Taro), but its SRS address is not
    one we take bounces at: the forged sender gets none relayed either."""
    destination = flow.remote("dest-one.example", "127.0.0.2")
    sender_mx = flow.remote("sender.example", "127.0.0.3")
    flow.set_forwarding(TARO, [DESTINATION], keep_copy=True)
    await receive(flow, FORGED, "forged")
    await flow.drain()
    [forward] = destination.envelopes
    bounce = (b"From: MAILER-DAEMON@dest-one.example\r\nSubject: failure\r\n\r\n<"
              + DESTINATION.encode() + b">: mailbox full\r\n")
    code, _text = await flow.mx.send_expect_error(bounce, mail_from="",
                                                  rcpt_tos=[forward.mail_from])
    assert code == 550
    await flow.drain()
    assert sender_mx.envelopes == []
