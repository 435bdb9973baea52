"""Issue 14, SPEC §6: the once-per-24-h reply allowance is spent only on a reply that was
really queued, and special senders (差出人, L4525) are recognised by the header From too.

The fault is injected into one function of the delivery store (the rename of inbox copies
into ``new/``, which runs after the ledger claim has committed): the MX answers 451, the
store gives the claim back, and the sender's retry gets its reply — exactly one.
"""

from __future__ import annotations

import errno
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import pytest
from sqlalchemy import select

from mailplane.clock import as_utc
from mailplane.delivery import store
from mailplane.mailstore.maildir import PendingFile
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage.models import AutoReplyLedger, OutboundJob
from tests.factories.flow import Flow, flow_settings_on
from tests.factories.mx import make_message

TARO = "taro_1@e06.example.net"
ALICE = "alice@sender.example"


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return flow_settings_on(request)


class InboxRenameFault:
    """Fails the next ``count`` renames into ``address``'s ``new/`` with EIO."""

    def __init__(self, flow: Flow, address: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.target = mailbox_dir(flow.mx.settings.maildir_root, address) / "new"
        self.count = 0
        self.failed = 0
        real = store.rename_into

        def rename_into(item: PendingFile) -> None:
            if self.count and item.final_path.parent == self.target:
                self.count -= 1
                self.failed += 1
                raise OSError(errno.EIO, "Input/output error")
            real(item)

        monkeypatch.setattr(store, "rename_into", rename_into)


def _ledger(flow: Flow) -> list[tuple[str, str, datetime]]:
    with flow.mx.session_factory() as session:
        rows = session.execute(select(AutoReplyLedger.address, AutoReplyLedger.sender,
                                      AutoReplyLedger.replied_at)).all()
    return [(address, sender, as_utc(at)) for address, sender, at in rows]


def _job_count(flow: Flow) -> int:
    with flow.mx.session_factory() as session:
        return len(session.scalars(select(OutboundJob.id)).all())


def _delivery_replied(flow: Flow) -> bool:
    assert flow.mx.server is not None
    recent = flow.mx.server.handler.delivery.auto_replies
    return recent.replied_recently(TARO, ALICE, flow.mx.clock.now())


async def test_a_delivery_failing_after_the_ledger_claim_gives_the_claim_back(
    flow: Flow, monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="away")
    fault = InboxRenameFault(flow, TARO, monkeypatch)
    fault.count = 1

    code, _text = await flow.mx.send_expect_error(make_message(), mail_from=ALICE)
    assert (code, fault.failed) == (451, 1)
    assert _ledger(flow) == []  # the claim committed, then was given back
    assert _job_count(flow) == 0 and flow.mx.inbox(TARO) == []
    assert not _delivery_replied(flow)

    # The sender retries: the mail is stored and gets its reply — exactly one.
    assert await flow.mx.send_expect_error(make_message(), mail_from=ALICE) == (250, "accepted")
    await flow.drain()
    assert len(flow.mx.inbox(TARO)) == 1
    assert [e.rcpt_tos for e in sender_mx.envelopes] == [[ALICE]]
    assert _ledger(flow) == [(TARO, ALICE, flow.mx.clock.now())]
    assert _delivery_replied(flow)

    await flow.mx.send(make_message(), mail_from=ALICE)
    await flow.drain()
    assert len(sender_mx.envelopes) == 1 and len(flow.mx.inbox(TARO)) == 2


async def test_a_refreshed_claim_that_fails_goes_back_to_the_previous_reply_time(
    flow: Flow, monkeypatch: pytest.MonkeyPatch,
) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="away")
    fault = InboxRenameFault(flow, TARO, monkeypatch)
    first = flow.mx.clock.now()
    await flow.mx.send(make_message(), mail_from=ALICE)
    await flow.drain()
    assert len(sender_mx.envelopes) == 1

    flow.mx.clock.advance(timedelta(hours=25))  # the allowance is due again
    fault.count = 1
    code, _text = await flow.mx.send_expect_error(make_message(), mail_from=ALICE)
    assert code == 451
    assert _ledger(flow) == [(TARO, ALICE, first)]

    await flow.mx.send(make_message(), mail_from=ALICE)
    await flow.drain()
    assert len(sender_mx.envelopes) == 2
    assert _ledger(flow) == [(TARO, ALICE, flow.mx.clock.now())]


def _reply_body(data: bytes) -> str:
    message = message_from_bytes(data, policy=policy.default)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()).strip()


async def test_a_special_sender_is_recognised_by_the_header_from(flow: Flow) -> None:
    sender_mx = flow.remote("sender.example")
    flow.set_auto_reply(TARO, default_message="default text",
                        special_senders=(ALICE,), special_message="special text")
    # Sent through a list-less relay: envelope sender differs, header From is Alice.
    await flow.mx.send(make_message(sender=f"Alice <{ALICE}>"),
                       mail_from="relay@sender.example")
    await flow.mx.send(make_message(sender="Bob <bob@sender.example>"),
                       mail_from="bob@sender.example")
    await flow.drain()
    replies = {e.rcpt_tos[0]: _reply_body(e.data) for e in sender_mx.envelopes}
    # The reply goes to the envelope sender (RFC 3834 §3.1), with the special text.
    assert replies == {"relay@sender.example": "special text",
                       "bob@sender.example": "default text"}
