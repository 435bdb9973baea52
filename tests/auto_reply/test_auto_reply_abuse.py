"""Issue 20 finding 4, SPEC §6, RFC 3834 §2 ("responders must not be a tool for abuse"):
the auto-reply is no spam cannon and no backscatter source.

- a burst of distinct (forged) senders draws at most ``outbound.auto_reply_max_per_minute``
  replies, counted for every MX process through the database, and the daily cap holds
  across minutes — every message is still delivered;
- mail judged spam (tagged, not quarantined) gets no reply;
- a sender whose domain fails SPF or DMARC gets no reply.

Replies are counted where they arrive: a capture SMTP server that is the sender domain's
MX (found through the DNS stub), after the outbound queue delivered them.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import select

from mailplane.auth.send_quota import purge_counters
from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.mail.auth_results import AuthResults
from mailplane.mail.message import MessageContext
from mailplane.metrics import REGISTRY
from mailplane.smtp.mx import start_mx
from mailplane.storage import rate_counter_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import RateCounter
from tests.factories.flow import Flow, flow_settings_on
from tests.factories.mx import GTUBE, MxEnv, make_message

TARO = "taro_1@e06.example.net"
PER_MINUTE = 10
PER_DAY = 15


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return flow_settings_on(request, outbound={"auto_reply_max_per_minute": PER_MINUTE,
                                               "auto_reply_max_per_day": PER_DAY})


def _capped(outcome: str) -> float:
    return REGISTRY.get_sample_value("mailplane_auto_replies_total",
                                     {"outcome": outcome}) or 0.0


async def _send_from(mx_port: int, sender: str) -> None:
    """One message from ``sender`` to Taro over a real SMTP socket (an asyncio client: a
    burst of threads would hold every worker thread the MX itself needs)."""
    await aiosmtplib.send(make_message(sender=sender), sender=sender, recipients=[TARO],
                          hostname="127.0.0.1", port=mx_port, start_tls=False,
                          local_hostname="client.sender.example", timeout=30)


async def test_a_burst_of_distinct_senders_draws_at_most_the_per_minute_cap_on_all_mx(
    flow: Flow,
) -> None:
    """40 forged senders in one burst, through two MX processes of one database (each
    with its own memory of the caps): 10 replies in all; all 40 messages delivered."""
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="ただいま不在です。")
    mx: MxEnv = flow.mx
    second = await start_mx(mx.settings, mx.session_factory, mx.cache, mx.clock)
    capped_before = _capped("capped_minute")
    try:
        senders = [f"forged{n}@sender.example" for n in range(40)]
        await asyncio.gather(*(
            _send_from(mx.port if n % 2 else second.port, sender)
            for n, sender in enumerate(senders)))
    finally:
        await second.aclose()
    await flow.drain()
    assert len(mx.inbox(TARO)) == 40
    replied = [e.rcpt_tos[0] for e in sender_mx.envelopes]
    assert len(replied) == PER_MINUTE and set(replied) <= set(senders)
    assert _capped("capped_minute") - capped_before == 40 - PER_MINUTE

    # A minute later the cap has room again (a new sender gets the reply).
    mx.clock.advance(timedelta(minutes=2))
    await mx.send(make_message(sender="later@sender.example"),
                  mail_from="later@sender.example")
    await flow.drain()
    assert len(sender_mx.envelopes) == PER_MINUTE + 1


async def test_the_daily_cap_holds_across_minutes(flow: Flow) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="away")
    capped_before = _capped("capped_day")
    for burst in range(3):
        for n in range(PER_MINUTE):
            sender = f"s{burst}-{n}@sender.example"
            await flow.mx.send(make_message(sender=sender), mail_from=sender)
        flow.mx.clock.advance(timedelta(minutes=2))
    await flow.drain()
    assert len(sender_mx.envelopes) == PER_DAY
    assert len(flow.mx.inbox(TARO)) == 3 * PER_MINUTE
    assert _capped("capped_day") - capped_before == 3 * PER_MINUTE - PER_DAY


async def test_mail_judged_spam_gets_no_reply_even_when_not_quarantined(flow: Flow) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="away")
    flow.mx.update_address(TARO, spam_judge=True, spam_quarantine=False)
    await flow.mx.send(make_message(sender="spammer@sender.example",
                                    body=GTUBE.decode() + "\r\n"),
                       mail_from="spammer@sender.example")
    await flow.mx.send(make_message(sender="friend@sender.example"),
                       mail_from="friend@sender.example")
    await flow.drain()
    inbox = flow.mx.inbox(TARO)
    assert len(inbox) == 2 and any(b"Subject: [spam] Hello" in m for m in inbox)
    assert [e.rcpt_tos for e in sender_mx.envelopes] == [["friend@sender.example"]]


async def test_a_sender_whose_domain_fails_spf_or_dmarc_gets_no_reply(flow: Flow) -> None:
    """``MessageContext.auth`` as the MX's inbound check fills it (SPEC §8b): a forged
    sender's own domain disowns the mail, so a reply would be backscatter."""
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="away")
    policy = flow.mx.cache.snapshot.lookup(TARO)
    assert policy is not None and flow.mx.server is not None
    delivery = flow.mx.server.handler.delivery
    verdicts = {
        "spf-fail@sender.example": AuthResults(spf="fail", spf_domain="sender.example"),
        "dmarc-fail@sender.example": AuthResults(spf="none", dmarc="fail",
                                                 from_domain="sender.example"),
        "spf-pass@sender.example": AuthResults(spf="pass", spf_domain="sender.example"),
    }
    for sender, auth in verdicts.items():
        ctx = MessageContext(mail_from=sender, rcpt_tos=(TARO,),
                             raw=make_message(sender=sender), received_at=flow.mx.clock.now(),
                             peer_ip="192.0.2.1", helo="client.sender.example",
                             queue_id=sender[:8], auth=auth)
        await delivery.deliver(ctx, [(TARO, policy)], protocol="ESMTP", listener="mx")
    await flow.drain()
    assert len(flow.mx.inbox(TARO)) == 3
    assert [e.rcpt_tos for e in sender_mx.envelopes] == [["spf-pass@sender.example"]]


def test_the_hourly_housekeeping_keeps_each_counter_for_two_of_its_windows(
    db_settings: Settings,
) -> None:
    """The daily cap lives in ``rate_counters`` beside the hourly submission quotas: the
    purge that forgets old hours must not forget today's replies (migration 0009)."""
    engine = make_engine(db_settings.database_url)
    factory = make_session_factory(engine)
    clock = FrozenClock()
    now = clock.now().timestamp()
    with factory() as session, session.begin():
        for key, seconds in (("minute", 60), ("hour", 3600), ("day", 86_400)):
            rate_counter_repo.charge(session, key=key, seconds=seconds, now=now, amount=1)

    def kept() -> set[str]:
        with factory() as session:
            return set(session.scalars(select(RateCounter.key)))

    clock.advance(timedelta(hours=3))
    purge_counters(factory, clock)
    assert kept() == {"day"}
    clock.advance(timedelta(days=2))
    purge_counters(factory, clock)
    assert kept() == set()
    engine.dispose()
