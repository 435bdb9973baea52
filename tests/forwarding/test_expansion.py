"""One message, one expansion (issue 20, finding 2; SPEC §5): however hosted addresses
forward to each other, each mailbox gets at most one copy and each remote destination at
most one.  Deliveries are counted in the mailboxes and at a capture MX, on SQLite and
PostgreSQL."""

from __future__ import annotations

from email import message_from_bytes
from typing import Any

import pytest
from sqlalchemy import select

from mailplane.storage.models import OutboundJob
from tests.factories.flow import FLOW_MX_SETTINGS, Flow
from tests.factories.mx import GTUBE, make_message

TARO = "taro_1@e06.example.net"
EXTERNAL = "x@dest-one.example"


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    overrides: dict[str, Any] = dict(FLOW_MX_SETTINGS)
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return overrides


def ring(flow: Flow, size: int, *, keep_copy: bool) -> list[str]:
    """``size`` hosted addresses (Taro first), each forwarding to the next two and to
    the same external address: the graph of the finding (35, 69 and 136 deliveries of
    one message with 4, 5 and 6 addresses)."""
    addresses = [TARO] + [flow.mx.add_address(f"u{n}@e07.example.net")
                          for n in range(1, size)]
    for n, address in enumerate(addresses):
        nxt = [addresses[(n + step) % size] for step in (1, 2)]
        flow.set_forwarding(address, [*nxt, EXTERNAL], keep_copy=keep_copy)
    return addresses


def jobs(flow: Flow) -> list[OutboundJob]:
    with flow.mx.session_factory() as session:
        return list(session.scalars(select(OutboundJob)))


@pytest.mark.parametrize("size", [4, 5, 6])
async def test_a_ring_of_forwards_delivers_once_per_mailbox_and_once_outside(
    flow: Flow, size: int,
) -> None:
    external = flow.remote("dest-one.example")
    addresses = ring(flow, size, keep_copy=True)
    await flow.mx.send(make_message(subject="ring"))
    await flow.drain()
    assert [len(flow.mx.inbox(a)) for a in addresses] == [1] * size
    assert [e.rcpt_tos for e in external.envelopes] == [[EXTERNAL]]
    assert await flow.drain() == 0
    assert [(j.kind, j.status) for j in jobs(flow)] == [("forward", "sent")]


async def test_with_keep_copy_off_the_message_goes_on_and_nothing_is_stored_twice(
    flow: Flow,
) -> None:
    external = flow.remote("dest-one.example")
    addresses = ring(flow, 5, keep_copy=False)
    await flow.mx.send(make_message(subject="ring"))
    await flow.drain()
    # Every address forwards it on, and it reached the outside once: no copy is kept.
    assert [flow.mx.inbox(a) for a in addresses] == [[]] * 5
    [outside] = external.envelopes
    assert message_from_bytes(outside.data)["Subject"] == "ring"


async def test_a_circle_with_no_way_out_keeps_one_copy(flow: Flow) -> None:
    addresses = [TARO] + [flow.mx.add_address(f"u{n}@e07.example.net") for n in (1, 2)]
    for n, address in enumerate(addresses):
        flow.set_forwarding(address, [addresses[(n + 1) % 3], addresses[(n + 2) % 3]],
                            keep_copy=False)
    await flow.mx.send(make_message(subject="circle"))
    assert [len(flow.mx.inbox(a)) for a in addresses] == [1, 0, 0]
    assert jobs(flow) == []


async def test_each_address_decides_for_its_own_copy_and_quarantine_stops_the_way_on(
    flow: Flow,
) -> None:
    external = flow.remote("dest-one.example")
    hanako = flow.mx.add_address("hanako_2@e07.example.net", spam_judge=True,
                                 spam_quarantine=True)
    flow.set_forwarding(TARO, [hanako], keep_copy=True)  # Taro judges no spam
    flow.set_forwarding(hanako, [EXTERNAL], keep_copy=False)
    await flow.mx.send(make_message(subject="offer", body=GTUBE.decode() + "\r\n"))
    await flow.drain()
    assert message_from_bytes(flow.mx.inbox(TARO)[0])["Subject"] == "offer"
    assert flow.mx.inbox(hanako) == [] and len(flow.mx.quarantine_files(hanako)) == 1
    assert external.envelopes == []
