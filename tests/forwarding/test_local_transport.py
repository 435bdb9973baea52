"""Issue 14: mail between hosted addresses never leaves the platform.

A real MX, the queue worker with the node's local transport, a DNS stub that knows no
hosted domain (any lookup for one would fail the mail) and capture servers for the remote
side — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import email.policy
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from typing import Any

import pytest
from sqlalchemy import select

from mailplane.mail.srs import Srs
from mailplane.mailstore.spool import stage_job
from mailplane.outbound.local_transport import LocalTransport
from mailplane.outbound.worker import OutboundWorker
from mailplane.storage.models import OutboundJob
from tests.factories.dns import DnsStub
from tests.factories.flow import FLOW_MX_SETTINGS, LOOPBACK_SPF, Flow
from tests.factories.mx import GTUBE, make_message
from tests.factories.outbound import SRS_DOMAIN, SRS_SECRET

TARO = "taro_1@e06.example.net"
HANAKO = "hanako_2@e06.example.net"
ALICE = "alice@sender.example"


@pytest.fixture
def sender_dns() -> Iterator[DnsStub]:
    """Where the MX verifies senders: Hanako's domain passes SPF, as a sender must for a
    DSN to come back to it (SPEC §5) — in a stub of its own, so the routing stub
    (``flow.dns``) still knows no hosted domain."""
    with DnsStub({"e06.example.net": {"TXT": [LOOPBACK_SPF]}}) as stub:
        yield stub


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest,
                          sender_dns: DnsStub) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        **FLOW_MX_SETTINGS,
        "authentication": {"nameserver": f"{sender_dns.host}:{sender_dns.port}"}}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return overrides


def _jobs(flow: Flow) -> list[OutboundJob]:
    with flow.mx.session_factory() as session:
        return list(session.scalars(select(OutboundJob).order_by(OutboundJob.created_at)))


def _no_hosted_lookups(flow: Flow) -> None:
    assert [q for q in flow.dns.queries if "example.net" in q[0]] == []


def _srs(flow: Flow) -> Srs:
    return Srs(secret=SRS_SECRET, domain=SRS_DOMAIN, now=flow.mx.clock.now)


async def test_forward_with_keep_copy_off_reaches_the_hosted_destination_through_its_filters(
    flow: Flow,
) -> None:
    flow.mx.add_address(HANAKO, spam_judge=True)  # B's own setting: tag spam
    flow.set_forwarding(TARO, [HANAKO], keep_copy=False)
    await flow.mx.send(make_message(subject="offer", body=GTUBE.decode() + "\r\n"),
                       mail_from=ALICE)
    # Delivered in the same transaction as A's (one expansion, issue 20): no job.
    [stored] = flow.mx.inbox(HANAKO)
    message = message_from_bytes(stored)
    assert message["Subject"] == "[spam] offer"  # B's spam judge, not A's (off)
    assert message["Return-Path"] == f"<{ALICE}>"  # the original sender: no SRS
    # Two hops traced: A's MX delivery (in the forwarded copy) and B's local one.
    assert stored.count(b"\r\nReceived: ") == 2 and b"with LOCAL id" in stored
    assert flow.mx.inbox(TARO) == []
    assert _jobs(flow) == []
    assert await flow.drain() == 0
    _no_hosted_lookups(flow)


async def test_forwarding_loop_between_hosted_addresses_stops_and_keeps_the_message(
    flow: Flow,
) -> None:
    flow.mx.add_address(HANAKO)
    flow.set_forwarding(TARO, [HANAKO], keep_copy=False)
    flow.set_forwarding(HANAKO, [TARO], keep_copy=False)
    await flow.mx.send(make_message(subject="round trip"), mail_from=ALICE)

    # A → B → A, both keep-copy OFF: a circle with no way out; the first address of it
    # keeps the message (never lost), once, and nothing is queued.
    [stored] = flow.mx.inbox(TARO)
    assert message_from_bytes(stored)["Subject"] == "round trip"
    assert flow.mx.inbox(HANAKO) == []
    assert _jobs(flow) == []
    assert await flow.drain() == 0
    _no_hosted_lookups(flow)


async def test_auto_reply_to_a_hosted_sender_arrives_in_its_inbox(flow: Flow) -> None:
    flow.mx.add_address(HANAKO)
    flow.set_auto_reply(TARO, default_message="ただいま不在です。")
    await flow.mx.send(make_message(sender=HANAKO, subject="会議"), mail_from=HANAKO)
    await flow.drain()

    [reply] = flow.mx.inbox(HANAKO)
    message = message_from_bytes(reply)
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["From"] == TARO
    assert message["Return-Path"] == "<>"
    assert len(flow.mx.inbox(TARO)) == 1
    _no_hosted_lookups(flow)


async def test_forward_to_a_hosted_address_that_does_not_exist_bounces_to_the_hosted_sender(
    flow: Flow,
) -> None:
    """A destination deleted after it was saved: the forward fails for good, the sender
    gets the DSN, and — keep-copy OFF — the message comes back to the inbox with a notice
    (SPEC §5: nothing is lost)."""
    flow.mx.add_address(HANAKO)
    flow.set_forwarding(TARO, ["ghost@e06.example.net"], keep_copy=False)
    await flow.mx.send(make_message(sender=HANAKO, subject="lost?"), mail_from=HANAKO)
    assert flow.mx.inbox(TARO) == []
    await flow.drain()

    jobs = {kind: [j for j in _jobs(flow) if j.kind == kind]
            for kind in ("forward", "dsn", "forward_return")}
    [forward], [dsn], returned = jobs["forward"], jobs["dsn"], jobs["forward_return"]
    assert (forward.kind, forward.mail_from, forward.status) == ("forward", HANAKO, "failed")
    assert forward.return_to == TARO
    assert (dsn.kind, dsn.recipients, dsn.status) == ("dsn", [HANAKO], "sent")
    assert [(j.kind, j.recipients, j.status) for j in returned] == [
        ("forward_return", [TARO], "sent")] * 2
    [bounce] = flow.mx.inbox(HANAKO)
    assert b"Final-Recipient: rfc822; ghost@e06.example.net" in bounce
    assert b"Status: 5.1.1" in bounce
    assert message_from_bytes(bounce)["To"] == f"<{HANAKO}>"
    stored = flow.mx.inbox(TARO)
    assert len(stored) == 2
    [notice] = [m for m in stored if b"Subject: lost?" not in m]
    text = message_from_bytes(notice, policy=email.policy.default)
    assert "ghost@e06.example.net" in text.get_body().get_content()  # type: ignore[union-attr]
    _no_hosted_lookups(flow)


async def test_dsn_of_a_failed_remote_forward_goes_to_the_original_sender_not_the_srs_alias(
    flow: Flow,
) -> None:
    flow.mx.add_address(HANAKO)
    remote = flow.remote("dest-one.example")
    remote.handler.rcpt_replies["a@dest-one.example"] = "550 5.1.1 no such user"
    flow.set_forwarding(TARO, ["a@dest-one.example"], keep_copy=True)
    await flow.mx.send(make_message(sender=HANAKO), mail_from=HANAKO)
    await flow.drain()

    forward, dsn = _jobs(flow)
    assert forward.mail_from == _srs(flow).forward(HANAKO)  # leaves the platform: SRS
    assert forward.status == "failed"
    assert (dsn.recipients, dsn.status) == ([HANAKO], "sent")
    [bounce] = flow.mx.inbox(HANAKO)
    assert b"Final-Recipient: rfc822; a@dest-one.example" in bounce


async def test_one_forward_to_a_hosted_and_a_remote_destination_uses_srs_only_outside(
    flow: Flow,
) -> None:
    flow.mx.add_address(HANAKO)
    remote = flow.remote("dest-one.example")
    flow.set_forwarding(TARO, [HANAKO, "a@dest-one.example"], keep_copy=False)
    await flow.mx.send(make_message(), mail_from=ALICE)
    await flow.drain()

    [outside] = remote.envelopes
    assert outside.mail_from == _srs(flow).forward(ALICE)
    [inside] = flow.mx.inbox(HANAKO)
    assert message_from_bytes(inside)["Return-Path"] == f"<{ALICE}>"
    # Only the copy leaving the platform is a job; the hosted one was stored at once.
    assert [(j.mail_from, tuple(j.recipients)) for j in _jobs(flow)] == [
        (outside.mail_from, ("a@dest-one.example",))]


async def test_full_hosted_mailbox_defers_the_job_and_it_is_delivered_later(
    flow: Flow,
) -> None:
    flow.mx.add_address(HANAKO, quota_bytes=1024)
    flow.set_forwarding(TARO, [HANAKO], keep_copy=False)
    await flow.mx.send(make_message(body=("x" * 70 + "\r\n") * 30), mail_from=ALICE)
    await flow.drain()
    [forward] = _jobs(flow)
    assert (forward.status, forward.attempts) == ("queued", 1)
    assert "4.2.2" in forward.last_error
    assert flow.mx.inbox(HANAKO) == []

    flow.mx.update_address(HANAKO, quota_bytes=1024**2)
    flow.mx.clock.advance(timedelta(minutes=5))
    await flow.drain()
    assert len(flow.mx.inbox(HANAKO)) == 1
    assert [j.status for j in _jobs(flow)] == ["sent"]


async def test_a_queued_job_with_an_srs_sender_reaches_a_hosted_recipient_unrewritten(
    flow: Flow,
) -> None:
    flow.mx.add_address(HANAKO)
    with flow.mx.session_factory() as session:
        stage_job(session, spool_dir=flow.mx.settings.spool_dir, kind="forward",
                  mail_from=_srs(flow).forward(ALICE), recipients=[HANAKO],
                  message=make_message(to=HANAKO), now=flow.mx.clock.now())
        session.commit()
    await flow.drain()
    [stored] = flow.mx.inbox(HANAKO)
    assert message_from_bytes(stored)["Return-Path"] == f"<{ALICE}>"


async def test_two_workers_deliver_many_hosted_forwards_exactly_once(flow: Flow) -> None:
    """Thirty queued forwards to a hosted address (jobs of an older release, or for an
    address the node had not loaded yet), two workers draining the queue at once through
    one delivery writer: every message reaches the destination once, none twice, none
    lost."""
    flow.mx.add_address(HANAKO)
    with flow.mx.session_factory() as session:
        for n in range(30):
            stage_job(session, spool_dir=flow.mx.settings.spool_dir, kind="forward",
                      mail_from=ALICE, recipients=[HANAKO],
                      message=make_message(to=HANAKO, subject=f"n{n}"),
                      now=flow.mx.clock.now())
        session.commit()
    assert flow.mx.server is not None
    local = LocalTransport(flow.mx.server.handler.delivery, flow.mx.clock,
                           flow.mx.session_factory)
    second = OutboundWorker(flow.mx.settings, flow.mx.session_factory, flow.mx.clock,
                            worker_id="w2", local=local, batch_size=5)
    flow.worker.batch_size = 5

    async def drain(worker: OutboundWorker) -> None:
        while await worker.run_once():
            pass

    await asyncio.gather(drain(flow.worker), drain(second))
    subjects = sorted(str(message_from_bytes(m)["Subject"]) for m in flow.mx.inbox(HANAKO))
    assert subjects == sorted(f"n{n}" for n in range(30))
    assert [j.status for j in _jobs(flow)] == ["sent"] * 30


async def test_an_address_the_snapshot_does_not_know_yet_is_retried_not_bounced(
    flow: Flow,
) -> None:
    flow.set_forwarding(TARO, [HANAKO], keep_copy=False)
    await flow.mx.send(make_message(), mail_from=ALICE)  # forwarded before hanako exists
    stale = flow.mx.cache.snapshot
    flow.mx.add_address(HANAKO)
    flow.mx.cache._snapshot = stale  # the node has not polled the new revision yet
    await flow.drain()
    [forward] = _jobs(flow)
    assert (forward.status, forward.attempts) == ("queued", 1)  # no DSN, no loss

    flow.mx.cache.load_now()
    flow.mx.clock.advance(timedelta(minutes=5))
    await flow.drain()
    assert len(flow.mx.inbox(HANAKO)) == 1
    assert [j.status for j in _jobs(flow)] == ["sent"]
