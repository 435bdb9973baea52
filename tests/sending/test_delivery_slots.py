"""Unit tests of the outbound scheduling rules (issue 20): the slot pool (a global and a
per-destination limit, FIFO, a full destination never holds back another) and the claim
choice (hosted jobs claimed whatever remote backlog is ahead, no hoarding)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from mailplane.config.sections import OutboundConfig
from mailplane.outbound.scheduling import LOCAL, REMOTE, choose
from mailplane.outbound.slots import SlotPool, SlotRefused


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_destination_never_gets_more_than_its_slots_and_others_pass_its_waiters() -> None:
    pool = SlotPool(total=3, per_destination=2)
    await pool.acquire("busy.example")
    await pool.acquire("busy.example")
    waiting = asyncio.create_task(pool.acquire("busy.example"))
    await _settle()
    assert not waiting.done()

    await asyncio.wait_for(pool.acquire("other.example"), 1)  # not behind busy's waiter
    assert (pool.busy("busy.example"), pool.busy("other.example")) == (2, 1)

    pool.release("busy.example")
    await asyncio.wait_for(waiting, 1)
    assert pool.busy("busy.example") == 2


async def test_the_global_limit_holds_and_frees_slots_in_arrival_order() -> None:
    pool = SlotPool(total=2, per_destination=2)
    await pool.acquire("a.example")
    await pool.acquire("b.example")
    order: list[str] = []

    async def take(key: str) -> None:
        await pool.acquire(key)
        order.append(key)

    waiters = [asyncio.create_task(take(key)) for key in ("c.example", "d.example")]
    await _settle()
    assert order == [] and pool.waiting == 2
    pool.release("a.example")
    await _settle()
    assert order == ["c.example"]
    pool.release("b.example")
    await asyncio.gather(*waiters)
    assert order == ["c.example", "d.example"] and pool.in_use == 2


async def test_waiters_for_a_dead_destination_are_turned_away_at_once() -> None:
    pool = SlotPool(total=5, per_destination=1)
    await pool.acquire("dead.example")
    waiters = [asyncio.create_task(pool.acquire("dead.example")) for _ in range(3)]
    await _settle()

    assert pool.abort_waiting("dead.example", "no greeting") == 3
    for waiter in waiters:
        with pytest.raises(SlotRefused, match="no greeting"):
            await waiter
    assert pool.busy("dead.example") == 1 and pool.waiting == 0


async def test_closing_turns_away_waiters_and_later_acquires() -> None:
    pool = SlotPool(total=1, per_destination=1)
    await pool.acquire("a.example")
    waiter = asyncio.create_task(pool.acquire("b.example"))
    await _settle()
    pool.close()
    with pytest.raises(SlotRefused):
        await waiter
    with pytest.raises(SlotRefused):
        await pool.acquire("c.example")


async def test_a_cancelled_waiter_leaks_no_slot() -> None:
    pool = SlotPool(total=1, per_destination=1)
    await pool.acquire("a.example")
    waiter = asyncio.create_task(pool.acquire("a.example"))
    await _settle()
    pool.release("a.example")  # granted to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.in_use == 0
    await asyncio.wait_for(pool.acquire("b.example"), 1)


# --- what to claim ------------------------------------------------------------------------

OUT = OutboundConfig(concurrency_limit=20, destination_concurrency_limit=5,
                     local_concurrency_limit=8)


def _hosted(recipient: str) -> bool:
    return recipient.endswith("@example.net")


def test_a_hosted_job_is_claimed_behind_any_remote_backlog() -> None:
    backlog = [(f"r{n}", (f"u{n}@slow.example",)) for n in range(40)]
    peeked = [*backlog, ("notice", ("taro@example.net",))]
    held: Counter[str] = Counter()

    chosen, blocked = choose(peeked, held=held, dead=set(), limit=100, is_local=_hosted,
                             out=OUT)

    assert chosen == [f"r{n}" for n in range(10)] + ["notice"]  # 2 x the destination limit
    assert blocked == {"slow.example"}
    assert held == Counter({"slow.example": 10, LOCAL: 1})


def test_jobs_of_a_dead_destination_are_claimed_to_be_deferred() -> None:
    peeked = [(f"d{n}", (f"u{n}@dead.example",)) for n in range(30)]
    chosen, _blocked = choose(peeked, held=Counter(), dead={"dead.example"}, limit=100,
                              is_local=_hosted, out=OUT)
    assert len(chosen) == 30


def test_the_remote_lane_as_a_whole_holds_at_most_twice_its_limit() -> None:
    peeked = [(f"j{n}", (f"u@d{n}.example",)) for n in range(60)]
    chosen, blocked = choose(peeked, held=Counter(), dead=set(), limit=100,
                             is_local=_hosted, out=OUT)
    assert len(chosen) == 40 and blocked == {REMOTE}


def test_the_local_lane_holds_at_most_twice_its_limit() -> None:
    peeked = [(f"h{n}", (f"a{n}@example.net",)) for n in range(30)]
    chosen, blocked = choose(peeked, held=Counter({LOCAL: 10}), dead=set(), limit=100,
                             is_local=_hosted, out=OUT)
    assert len(chosen) == 6 and blocked == {LOCAL}
