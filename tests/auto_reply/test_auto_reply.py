"""Auto-reply (SPEC §6): RFC 3834 suppression, message choice, the reply itself, and the
24 h ledger claimed with one conditional upsert (SQLite and PostgreSQL)."""

from __future__ import annotations

import email.policy
import threading
from datetime import timedelta
from email.message import Message
from email.parser import BytesHeaderParser
from zoneinfo import ZoneInfo

import pytest

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.delivery.local import LocalDelivery
from mailplane.filters import auto_reply
from mailplane.filters.auto_reply import (
    build_reply,
    choose_message,
    reply_subject,
    suppression_reason,
)
from mailplane.filters.auto_reply_gate import REPLY_WINDOW
from mailplane.filters.scan import Scanner
from mailplane.mail.message import MessageContext
from mailplane.mail.srs import srs_from_settings
from mailplane.policy.model import AddressPolicy, AutoReplyPolicy
from mailplane.storage import addresses_repo
from mailplane.storage.auto_reply_ledger_repo import claim_reply
from mailplane.storage.db import make_engine, make_session_factory
from tests.factories.addresses import add_address
from tests.factories.outbound import OutboundEnv
from tests.factories.queue import jobs, parse

ADDRESS = "taro_1@e06.example.net"
SENDER = "alice@sender.example"


def headers(extra: str = "", to: str = ADDRESS) -> Message:
    raw = (
        f"From: Alice <{SENDER}>\r\nTo: {to}\r\nSubject: Hello\r\n"
        f"Message-ID: <orig@sender.example>\r\n{extra}\r\nbody\r\n"
    ).encode()
    return BytesHeaderParser(policy=email.policy.default).parsebytes(raw)


def reason(
    *, sender: str = SENDER, extra: str = "", to: str = ADDRESS, flagged: bool = False,
    require_to_cc: bool = True,
) -> str | None:
    return suppression_reason(
        address=ADDRESS, envelope_sender=sender, headers=headers(extra, to),
        quarantined_or_virus=flagged, require_address_in_recipients=require_to_cc,
    )


def test_ordinary_personal_mail_gets_a_reply() -> None:
    assert reason() is None
    assert reason(extra="Auto-Submitted: no\r\n") is None
    assert reason(to="Bob <bob@x.example>", extra=f"Cc: Taro <{ADDRESS.upper()}>\r\n") is None


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"sender": ""}, auto_reply.NULL_SENDER),
        ({"sender": "<>"}, auto_reply.NULL_SENDER),
        ({"sender": "MAILER-DAEMON@mx.example"}, auto_reply.ROBOT_SENDER),
        ({"sender": "postmaster@mx.example"}, auto_reply.ROBOT_SENDER),
        ({"sender": "news-request@lists.example"}, auto_reply.ROBOT_SENDER),
        ({"sender": "owner-news@lists.example"}, auto_reply.ROBOT_SENDER),
        ({"sender": "noreply@shop.example"}, auto_reply.ROBOT_SENDER),
        ({"sender": "no-reply@shop.example"}, auto_reply.ROBOT_SENDER),
        ({"sender": "do-not-reply@shop.example"}, auto_reply.ROBOT_SENDER),
        ({"extra": "Auto-Submitted: auto-replied\r\n"}, auto_reply.AUTO_SUBMITTED),
        ({"extra": "Auto-Submitted: auto-generated\r\n"}, auto_reply.AUTO_SUBMITTED),
        ({"extra": "Precedence: bulk\r\n"}, auto_reply.PRECEDENCE),
        ({"extra": "Precedence: junk\r\n"}, auto_reply.PRECEDENCE),
        ({"extra": "Precedence: list\r\n"}, auto_reply.PRECEDENCE),
        ({"extra": "List-Id: <news.lists.example>\r\n"}, auto_reply.MAILING_LIST),
        ({"extra": "List-Unsubscribe: <mailto:u@lists.example>\r\n"}, auto_reply.MAILING_LIST),
        ({"extra": "X-Auto-Response-Suppress: All\r\n"}, auto_reply.RESPONSE_SUPPRESSED),
        ({"extra": "X-Auto-Response-Suppress: DR, OOF\r\n"}, auto_reply.RESPONSE_SUPPRESSED),
        ({"flagged": True}, auto_reply.QUARANTINED),
        ({"sender": ADDRESS.upper()}, auto_reply.OWN_ADDRESS),
        ({"to": "someone@else.example"}, auto_reply.NOT_ADDRESSED),
    ],
)
def test_auto_reply_is_suppressed(kwargs: dict[str, object], expected: str) -> None:
    assert reason(**kwargs) == expected  # type: ignore[arg-type]


def test_to_cc_check_can_be_turned_off() -> None:
    assert reason(to="someone@else.example", require_to_cc=False) is None


def test_special_senders_get_the_special_message_others_the_default() -> None:
    policy = AutoReplyPolicy(
        enabled=True, special_senders=frozenset({"Boss@Company.example"}),
        special_message="特別なメッセージ", default_message="不在です",
    )
    assert choose_message(policy, "boss@company.example") == "特別なメッセージ"
    assert choose_message(policy, SENDER) == "不在です"
    no_default = AutoReplyPolicy(
        enabled=True, special_senders=frozenset({"boss@company.example"}),
        special_message="special", default_message="",
    )
    assert choose_message(no_default, SENDER) is None  # empty default = no reply
    assert choose_message(AutoReplyPolicy(enabled=False, default_message="x"), SENDER) is None


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Hello", "Re: Hello"),
        ("Re: Hello", "Re: Hello"),
        ("RE: Re: Hello", "Re: Hello"),
        ("Re[2]: Hello", "Re: Hello"),
        ("=?utf-8?b?44GT44KT44Gr44Gh44Gv?=", "Re: こんにちは"),
        ("=?iso-2022-jp?b?GyRCJDMkcyRLJEEkTxsoQg==?=", "Re: こんにちは"),
        ("", "Re:"),
    ],
)
def test_reply_subject_is_re_once_of_the_decoded_original(original: str, expected: str) -> None:
    assert reply_subject(original) == expected


def test_reply_has_rfc3834_headers_and_a_correctly_encoded_japanese_body() -> None:
    original = headers("References: <older@sender.example>\r\n")
    del original["Subject"]
    original["Subject"] = "=?utf-8?b?44GT44KT44Gr44Gh44Gv?="
    body = "ただいま不在にしております。\n3日に戻ります。"
    clock = FrozenClock()
    raw = build_reply(
        address=ADDRESS, sender=SENDER, original_headers=original, body=body,
        hostname="mx.mailplane.test", now=clock.now(), tz=ZoneInfo("Asia/Tokyo"),
    )
    assert all(byte < 128 for byte in raw)  # 7-bit clean on the wire
    reply = parse(raw)
    assert reply["From"] == ADDRESS
    assert reply["To"] == SENDER
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["In-Reply-To"] == "<orig@sender.example>"
    assert reply["References"] == "<older@sender.example> <orig@sender.example>"
    assert reply["Subject"] == "Re: こんにちは"
    assert reply["Message-ID"].endswith("@mx.mailplane.test>")
    assert reply["Date"].endswith("+0900")
    assert reply.get_content_type() == "text/plain"
    assert reply.get_content_charset() == "utf-8"
    assert reply.get_content().replace("\r\n", "\n").rstrip("\n") == body


# --- the 24 h ledger --------------------------------------------------------------------


def test_one_reply_per_sender_per_24_hours(db_settings: Settings) -> None:
    engine = make_engine(db_settings.database_url)
    factory = make_session_factory(engine)
    clock = FrozenClock()

    def claim(sender: str = SENDER) -> bool:
        with factory() as session:
            won = claim_reply(session, address=ADDRESS, sender=sender, now=clock.now(),
                              window=REPLY_WINDOW)
            session.commit()
        return won

    assert claim() is True
    clock.advance(timedelta(hours=23))
    assert claim() is False
    assert claim(SENDER.upper()) is False  # sender compared lowercase
    assert claim("other@sender.example") is True  # per sender
    clock.advance(timedelta(hours=1))
    assert claim() is True  # 24 h after the first reply
    assert claim() is False  # and the window restarts from that reply
    engine.dispose()


def test_two_concurrent_claims_for_the_same_sender_yield_exactly_one_reply(
    db_settings: Settings,
) -> None:
    engine = make_engine(db_settings.database_url)
    factory = make_session_factory(engine)
    now = FrozenClock().now()
    for round_ in range(3):
        results: list[bool] = []
        barrier = threading.Barrier(2)

        def claimer(
            sender: str, barrier: threading.Barrier = barrier, results: list[bool] = results
        ) -> None:
            barrier.wait()
            with factory() as session:
                won = claim_reply(session, address=ADDRESS, sender=sender, now=now,
                                  window=REPLY_WINDOW)
                session.commit()
            results.append(won)

        sender = f"racer{round_}@sender.example"
        threads = [threading.Thread(target=claimer, args=(sender,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(results) == [False, True]
    engine.dispose()


def _delivery(settings: Settings, clock: FrozenClock) -> LocalDelivery:
    """A node's local delivery (no scanners wanted: the policy has the checks OFF) for
    the hosted address :data:`ADDRESS` (made here if it does not exist yet)."""
    factory = make_session_factory(make_engine(settings.database_url))
    with factory() as session:
        exists = addresses_repo.find(session, address=ADDRESS) is not None
    if not exists:
        add_address(factory, ADDRESS)
    return LocalDelivery(settings, factory, clock,
                         scanner=Scanner(None, None, virus=settings.virus, spam=settings.spam),
                         srs=srs_from_settings(settings, clock))


AWAY = AddressPolicy(address=ADDRESS, address_id=1, contract_id=1, pop_account="m0000001",
                     status="active", virus_check=False,
                     auto_reply=AutoReplyPolicy(enabled=True, default_message="不在です"))
MESSAGE = (f"From: Alice <{SENDER}>\r\nTo: {ADDRESS}\r\nSubject: Hello\r\n"
           f"Message-ID: <orig@sender.example>\r\n\r\nbody\r\n").encode()


async def deliver(delivery: LocalDelivery, clock: FrozenClock) -> None:
    ctx = MessageContext(mail_from=SENDER, rcpt_tos=(ADDRESS,), raw=MESSAGE,
                         received_at=clock.now(), queue_id="q1")
    await delivery.deliver(ctx, [(ADDRESS, AWAY)], protocol="ESMTP", listener="mx")


async def test_a_process_that_loses_the_claim_remembers_the_winners_reply_time(
    db_settings: Settings,
) -> None:
    """Two MX processes, each with its own memory of recent replies: the loser must stop
    claiming on every message (it did, and that was 26 % of MX CPU with two workers), yet
    reply again once the *winner's* 24 h are over — not 24 h after it lost."""
    clock = FrozenClock()
    winner, loser = _delivery(db_settings, clock), _delivery(db_settings, clock)
    won_at = clock.now()
    await deliver(winner, clock)
    clock.advance(timedelta(hours=2))
    assert loser.auto_replies.replied_recently(ADDRESS, SENDER, clock.now()) is False
    await deliver(loser, clock)
    recent = loser.auto_replies
    assert recent.replied_recently(ADDRESS, SENDER.upper(), clock.now()) is True
    assert recent.replied_recently(ADDRESS, SENDER, won_at + timedelta(hours=24)) is False
    for delivery in (winner, loser):
        await delivery.aclose()


async def test_two_deliveries_from_one_sender_queue_one_null_sender_reply(
    outbound_env: OutboundEnv,
) -> None:
    env = outbound_env
    delivery = _delivery(env.settings, env.clock)
    for _ in range(2):
        await deliver(delivery, env.clock)
    await delivery.aclose()
    [job] = jobs(env)
    assert (job.kind, job.mail_from, job.recipients) == ("auto_reply", "", [SENDER])
