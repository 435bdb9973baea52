"""Issue 20 finding 9: deletion is immediate on every node.

A node's policy snapshot still holds an address deleted since its last refresh (here the
MX's cache is simply not reloaded after the deletion, as on a second node between two
polls).  Its RCPT is still accepted, but the delivery re-checks the address inside its
transaction: nothing is stored for it, the deleted mailbox's files are never recreated,
and the sender gets ``550 5.1.1`` when no other recipient took the message (the copy is
left out, with a log line, when others did).  On SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mailplane.mailstore.paths import mailbox_dir, remove_tree
from mailplane.mailstore.spool import stage_job
from mailplane.storage import addresses_repo
from mailplane.storage.models import OutboundJob, QuarantineItem
from tests.factories.flow import Flow, flow_settings_on
from tests.factories.mx import MxEnv, make_message

TARO = "taro_1@e06.example.net"
GONE = "gone_1@e06.example.net"


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return flow_settings_on(request)


def delete_as_the_api_does(mx: MxEnv, address: str) -> None:
    """``DELETE …/addresses/{address}``'s effect: the row (and its quarantine index)
    deleted and committed, then the mailbox and quarantine trees removed.  The MX's
    policy cache is not told."""
    with mx.session_factory() as session:
        row = addresses_repo.find(session, address=address)
        assert row is not None
        assert addresses_repo.delete_address(session, address=row, now=mx.clock.now())
        session.commit()
    remove_tree(mailbox_dir(mx.settings.maildir_root, address))
    remove_tree(mailbox_dir(mx.settings.quarantine_root, address))
    assert mx.cache.snapshot.lookup(address) is not None  # stale, as on another node


def _no_trace_of(mx: MxEnv, address: str) -> None:
    assert not mailbox_dir(mx.settings.maildir_root, address).exists()
    assert not mailbox_dir(mx.settings.quarantine_root, address).exists()
    with mx.session_factory() as session:
        assert session.scalars(select(QuarantineItem.id)
                               .where(QuarantineItem.address == address)).all() == []


async def test_mail_for_an_address_deleted_since_the_refresh_is_550_and_nothing_is_recreated(
    mx: MxEnv,
) -> None:
    mx.add_address(GONE)
    await mx.send(make_message(to=GONE), rcpt_tos=[GONE])
    assert len(mx.inbox(GONE)) == 1
    delete_as_the_api_does(mx, GONE)
    code, text = await mx.send_expect_error(make_message(to=GONE), rcpt_tos=[GONE])
    assert (code, text.split()[0]) == (550, "5.1.1")
    _no_trace_of(mx, GONE)


async def test_a_deleted_recipient_is_left_out_and_the_others_get_the_message(
    flow: Flow,
) -> None:
    """Its auto-reply goes with it: no job is queued for a deleted address."""
    mx = flow.mx
    mx.add_address(GONE)
    flow.set_auto_reply(GONE, default_message="away")
    delete_as_the_api_does(mx, GONE)
    assert await mx.send(make_message(to=GONE), rcpt_tos=[GONE, TARO]) == {}
    assert len(mx.inbox(TARO)) == 1
    _no_trace_of(mx, GONE)
    with mx.session_factory() as session:
        assert session.scalars(select(OutboundJob.id)).all() == []


async def test_denied_mail_for_a_deleted_address_leaves_no_quarantine_behind(
    mx: MxEnv,
) -> None:
    mx.add_address(GONE, lists={"deny_address": ["sender.example"]})
    delete_as_the_api_does(mx, GONE)
    code, text = await mx.send_expect_error(make_message(to=GONE), rcpt_tos=[GONE])
    assert (code, text.split()[0]) == (550, "5.1.1")
    _no_trace_of(mx, GONE)


async def test_a_queued_job_for_a_deleted_address_fails_5_1_1_and_recreates_nothing(
    flow: Flow,
) -> None:
    """The queue's local transport goes through the same delivery: a notice queued for
    the address before it was deleted fails for good instead of recreating its mailbox."""
    mx = flow.mx
    mx.add_address(GONE)
    with mx.session_factory() as session:
        job_id = stage_job(session, spool_dir=mx.settings.spool_dir, kind="notice",
                           mail_from="", recipients=[GONE],
                           message=make_message(to=GONE), now=mx.clock.now())
        session.commit()
    delete_as_the_api_does(mx, GONE)
    await flow.drain()
    with mx.session_factory() as session:
        job = session.get(OutboundJob, job_id)
        assert job is not None and job.status == "failed" and "5.1.1" in (job.last_error or "")
    _no_trace_of(mx, GONE)
