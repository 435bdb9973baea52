"""Forwarding outside the platform counts like sending (issue 20, finding 3; SPEC §5,
§8a): a burst through one forwarding address produces no more external deliveries than
its hourly limit allows — on every node together — and what is over the limit stays in
the inbox even with keep-copy OFF.  Mail judged spam never leaves through a forward.
Counted at a capture MX, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest

from mailplane import metrics
from mailplane.config.sections import ForwardingConfig, SubmissionConfig
from mailplane.smtp.mx import start_mx
from tests.factories.flow import FLOW_MX_SETTINGS, Flow
from tests.factories.mx import GTUBE, make_message

TARO = "taro_1@e06.example.net"
DESTINATIONS = ["a@dest-one.example", "b@dest-one.example", "c@dest-one.example"]


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        **FLOW_MX_SETTINGS,
        "forwarding": {"remote_messages_per_hour": 5, "remote_recipients_per_hour": 9},
    }
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return overrides


def _send(port: int, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice@sender.example", [TARO], message)


def withheld(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("mailplane_forwards_withheld_total",
                                              {"reason": reason})
    return value or 0.0


def test_by_default_an_address_forwards_outside_what_submission_sends_for_an_account(
) -> None:
    forwarding, submission = ForwardingConfig(), SubmissionConfig()
    assert (forwarding.remote_messages_per_hour, forwarding.remote_recipients_per_hour) == (
        submission.account_messages_per_hour, submission.account_recipients_per_hour)
    assert (forwarding.remote_messages_per_hour,
            forwarding.remote_recipients_per_hour) == (100, 300)


async def test_a_burst_through_one_address_is_capped_and_the_rest_stays_in_the_inbox(
    flow: Flow,
) -> None:
    capture = flow.remote("dest-one.example")
    flow.set_forwarding(TARO, DESTINATIONS[:1], keep_copy=False)
    before = withheld("rate_limit")
    for n in range(8):
        await flow.mx.send(make_message(subject=f"burst {n}"), mail_from=f"s{n}@any.example")
    await flow.drain()
    assert len(capture.envelopes) == 5  # forwarding.remote_messages_per_hour
    assert len(flow.mx.inbox(TARO)) == 3  # keep-copy OFF, yet nothing is lost
    assert withheld("rate_limit") - before == 3


async def test_remote_recipients_count_too(flow: Flow) -> None:
    capture = flow.remote("dest-one.example")
    flow.set_forwarding(TARO, DESTINATIONS, keep_copy=False)
    for n in range(4):
        await flow.mx.send(make_message(subject=f"wide {n}"))
    await flow.drain()
    # 9 remote recipients an hour: three messages to three destinations each.
    assert sum(len(e.rcpt_tos) for e in capture.envelopes) == 9
    assert len(flow.mx.inbox(TARO)) == 1


async def test_the_limit_is_shared_by_every_node(flow: Flow) -> None:
    """A second MX (another node) on the same database: together, still five."""
    capture = flow.remote("dest-one.example")
    flow.set_forwarding(TARO, DESTINATIONS[:1], keep_copy=False)
    mx = flow.mx
    other = await start_mx(mx.settings, mx.session_factory, mx.cache, mx.clock)
    try:
        for n in range(8):
            port = mx.port if n % 2 else other.port
            await asyncio.to_thread(_send, port, make_message(subject=f"node {port} {n}"))
    finally:
        await other.aclose()
    await flow.drain()
    assert len(capture.envelopes) == 5
    assert len(mx.inbox(TARO)) == 3


async def test_mail_judged_spam_is_not_forwarded_outside_and_stays_in_the_inbox(
    flow: Flow,
) -> None:
    capture = flow.remote("dest-one.example")
    flow.mx.update_address(TARO, spam_judge=True)
    flow.set_forwarding(TARO, DESTINATIONS[:1], keep_copy=False)
    before = withheld("spam")
    await flow.mx.send(make_message(subject="offer", body=GTUBE.decode() + "\r\n"))
    await flow.mx.send(make_message(subject="hello"))
    await flow.drain()
    [kept] = flow.mx.inbox(TARO)
    assert b"Subject: [spam] offer" in kept
    assert [e.rcpt_tos for e in capture.envelopes] == [DESTINATIONS[:1]]  # "hello" only
    assert withheld("spam") - before == 1
