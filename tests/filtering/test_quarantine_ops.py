"""Quarantine list/show/release/delete, retention purge and the digest (SPEC §4, §8, §9)."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import timedelta

from prometheus_client import generate_latest

from mailplane.delivery.periodic import start_background_jobs
from mailplane.delivery.quarantine import (
    delete_quarantine,
    list_quarantine,
    release_quarantine,
    show_quarantine,
)
from mailplane.delivery.retention import purge
from mailplane.metrics import REGISTRY
from mailplane.notices.digest import send_quarantine_digests
from tests.factories.mx import GTUBE, MxEnv, make_message

TARO = "taro_1@e06.example.net"


async def quarantine_two(mx: MxEnv) -> list[str]:
    mx.update_address(TARO, spam_judge=True, spam_quarantine=True, spam_notify=True)
    await mx.send(make_message(subject="first spam", body=GTUBE.decode() + "\r\n"))
    mx.clock.advance(timedelta(minutes=5))
    await mx.send(make_message(subject="second spam", body=GTUBE.decode() + "\r\n"))
    return [entry.id for entry in list_quarantine(mx.settings, mx.session_factory, address=TARO,
                                              clock=mx.clock)]


async def test_list_is_newest_first_and_show_gives_headers_and_preview(mx: MxEnv) -> None:
    ids = await quarantine_two(mx)
    entries = list_quarantine(mx.settings, mx.session_factory, address=TARO,
                                              clock=mx.clock)
    assert [e.subject for e in entries] == ["second spam", "first spam"]
    detail = show_quarantine(mx.settings, mx.session_factory, address=TARO, item_id=ids[0],
                             clock=mx.clock)
    assert detail is not None
    assert ("Subject", "[spam] second spam") in detail.headers
    assert "GTUBE" in detail.body_preview
    assert detail.raw.startswith(b"Return-Path: <alice@sender.example>")
    assert show_quarantine(mx.settings, mx.session_factory, address="other@e06.example.net",
                           item_id=ids[0], clock=mx.clock) is None


async def test_release_delivers_to_inbox_unfiltered_and_removes_the_item(mx: MxEnv) -> None:
    ids = await quarantine_two(mx)
    assert release_quarantine(mx.settings, mx.session_factory, address=TARO,
                              item_id=ids[0], clock=mx.clock)
    [released] = mx.inbox(TARO)
    assert b"GTUBE" in released  # still spam: no second filtering
    assert [e.id for e in list_quarantine(mx.settings, mx.session_factory, address=TARO,
                                              clock=mx.clock)] == ids[1:]
    assert len(mx.quarantine_files(TARO)) == 1
    assert not release_quarantine(mx.settings, mx.session_factory, address=TARO,
                                  item_id=ids[0], clock=mx.clock)


async def test_delete_removes_index_row_and_file(mx: MxEnv) -> None:
    ids = await quarantine_two(mx)
    assert delete_quarantine(mx.settings, mx.session_factory, address=TARO, item_id=ids[1],
                             clock=mx.clock)
    assert [e.id for e in list_quarantine(mx.settings, mx.session_factory, address=TARO,
                                              clock=mx.clock)] == ids[:1]
    assert len(mx.quarantine_files(TARO)) == 1
    assert mx.inbox(TARO) == []


async def test_purge_deletes_only_expired_quarantine_and_inbox_mail(mx: MxEnv) -> None:
    await quarantine_two(mx)
    mx.update_address(TARO, spam_quarantine=False)
    await mx.send(make_message(subject="old inbox mail"))
    mx.clock.advance(timedelta(days=7, minutes=-2))  # first spam 7 d + 3 min old, second not
    await mx.send(make_message(subject="new inbox mail"))
    result = purge(mx.settings, mx.session_factory, mx.clock)
    assert (result.quarantine_deleted, result.inbox_deleted) == (1, 0)
    assert [e.subject for e in list_quarantine(mx.settings, mx.session_factory, address=TARO,
                                              clock=mx.clock)] == [
        "second spam"
    ]
    mx.clock.advance(timedelta(days=21, minutes=5))  # old inbox mail is now > 28 days old
    result = purge(mx.settings, mx.session_factory, mx.clock)
    assert (result.quarantine_deleted, result.inbox_deleted) == (1, 1)
    assert len(mx.inbox(TARO)) == 1
    assert mx.quarantine_files(TARO) == []


async def test_digest_lists_only_newly_quarantined_items(mx: MxEnv) -> None:
    await quarantine_two(mx)
    assert send_quarantine_digests(mx.settings, mx.session_factory, mx.clock) == 1
    [digest] = mx.inbox(TARO)
    message = email.message_from_bytes(digest, policy=email.policy.default)
    assert message["Auto-Submitted"] == "auto-generated"
    assert "隔離" in str(message["Subject"])
    body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "first spam" in body and "second spam" in body
    assert "2026/11/23 12:00" in body  # 03:00 UTC shown in Asia/Tokyo
    assert send_quarantine_digests(mx.settings, mx.session_factory, mx.clock) == 0
    await mx.send(make_message(subject="third spam", body=GTUBE.decode() + "\r\n"))
    assert send_quarantine_digests(mx.settings, mx.session_factory, mx.clock) == 1
    newest = [m for m in mx.inbox(TARO) if m != digest]
    assert len(newest) == 1
    assert b"first spam" not in newest[0]


async def test_no_digest_when_notify_is_off(mx: MxEnv) -> None:
    await quarantine_two(mx)
    mx.update_address(TARO, spam_notify=False)
    assert send_quarantine_digests(mx.settings, mx.session_factory, mx.clock) == 0
    assert mx.inbox(TARO) == []


async def test_metrics_count_outcomes_and_filter_hits(mx: MxEnv) -> None:
    before = generate_latest(REGISTRY).decode()
    await quarantine_two(mx)
    after = generate_latest(REGISTRY).decode()
    assert 'mailplane_filter_hits_total{filter="spam",listener="mx"}' in after
    assert 'mailplane_messages_total{listener="mx",outcome="accepted"}' in after
    assert "mailplane_data_to_reply_seconds_bucket" in after
    assert before != after


async def test_background_jobs_send_a_digest_and_stop_cleanly(mx: MxEnv) -> None:
    await quarantine_two(mx)
    jobs = start_background_jobs(mx.settings, mx.session_factory, mx.clock)
    try:
        for _ in range(500):  # the first round runs at once; wait for it, not for a time
            if mx.inbox(TARO):
                break
            await asyncio.sleep(0.02)
    finally:
        await jobs.aclose()
    assert len(mx.inbox(TARO)) == 1
    assert all(task.done() for task in jobs.tasks)
