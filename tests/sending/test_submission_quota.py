"""Issue 20 finding 7 on submission (SPEC §8a): a customer's message to a hosted mailbox
that is full still goes to its other recipients; the customer — authenticated, so never a
forged sender — gets a DSN naming the mailbox that could not take it.  When every
recipient is full the message is deferred (``452 4.2.2``) with nothing stored."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

from sqlalchemy import select

from mailplane.storage.models import OutboundJob
from tests.factories.submission import (
    NEIGHBOUR,
    SENDER,
    SubmissionEnv,
    auth_plain,
    make_message,
    open_tls,
    send_expect,
)

BODY = b"".join([b"x" * 70 + b"\r\n"] * 30)


async def _send(sub: SubmissionEnv, rcpt_tos: tuple[str, ...]) -> tuple[int, str]:
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(body=BODY), rcpt_tos=rcpt_tos)

    return await asyncio.to_thread(run)


async def test_a_full_hosted_mailbox_does_not_hold_back_the_others_and_the_customer_hears(
    sub: SubmissionEnv,
) -> None:
    await sub.update_address(NEIGHBOUR, quota_bytes=1000)
    assert (await _send(sub, ("friend@remote.example", NEIGHBOUR)))[0] == 250
    assert sub.inbox(NEIGHBOUR) == []
    with sub.session_factory() as session:
        jobs = {job.kind: job for job in session.scalars(select(OutboundJob))}
    assert set(jobs) == {"submission", "dsn"}
    assert jobs["submission"].recipients == ["friend@remote.example"]
    dsn = jobs["dsn"]
    assert (dsn.mail_from, dsn.recipients) == ("", [SENDER])
    report = await asyncio.to_thread(Path(dsn.spool_path).read_bytes)
    parsed = email.message_from_bytes(report, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert f"Final-Recipient: rfc822; {NEIGHBOUR}".encode() in report
    assert b"Status: 5.2.2" in report


async def test_when_every_recipient_is_full_the_message_is_deferred(
    sub: SubmissionEnv,
) -> None:
    await sub.update_address(NEIGHBOUR, quota_bytes=1000)
    code, text = await _send(sub, (NEIGHBOUR,))
    assert (code, text.split()[0]) == (452, "4.2.2")
    with sub.session_factory() as session:
        assert session.scalars(select(OutboundJob.id)).all() == []
