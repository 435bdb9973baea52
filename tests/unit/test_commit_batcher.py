"""Group commit: deliveries that arrive while a commit runs share the next transaction,
each caller returns only after its own rows are committed, and a failing delivery does not
fail its neighbours."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from mailplane.delivery.commit_batcher import CommitBatcher
from mailplane.settings import Settings
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import AuditRecord


def _insert(action: str):  # type: ignore[no-untyped-def]
    def work(session: Session) -> str:
        session.add(AuditRecord(at=datetime(2026, 11, 23, tzinfo=UTC),
                                actor="test", action=action, detail={}))
        session.flush()
        return action
    return work


def test_waiting_deliveries_share_one_commit_and_each_gets_its_own_result(
    settings: Settings,
) -> None:
    engine = make_engine(settings.database_url)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    batcher = CommitBatcher(make_session_factory(engine))
    release_first = threading.Event()

    def first(session: Session) -> str:
        release_first.wait(10)  # hold the commit while the others queue up
        return _insert("first")(session)

    results: dict[str, str] = {}

    def call(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        results[name] = batcher.run(fn)

    leader = threading.Thread(target=call, args=("first", first))
    leader.start()
    while not batcher._commit_lock.locked():
        time.sleep(0.001)
    others = [threading.Thread(target=call, args=(f"w{i}", _insert(f"w{i}"))) for i in range(8)]
    for thread in others:
        thread.start()
    while len(batcher._queue) < 8:
        time.sleep(0.001)
    release_first.set()
    for thread in [leader, *others]:
        thread.join(10)
    assert results == {"first": "first", **{f"w{i}": f"w{i}" for i in range(8)}}
    assert len(commits) == 2  # the leader's, then one for all eight that waited
    with make_session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == 9
    engine.dispose()


def test_a_failing_delivery_does_not_fail_the_ones_batched_with_it(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    batcher = CommitBatcher(make_session_factory(engine))
    gate = threading.Event()

    def slow(session: Session) -> str:
        gate.wait(10)
        return _insert("slow")(session)

    def broken(session: Session) -> str:
        raise RuntimeError("disk on fire")

    outcomes: dict[str, object] = {}

    def call(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            outcomes[name] = batcher.run(fn)
        except RuntimeError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=call, args=("slow", slow))]
    threads[0].start()
    while not batcher._commit_lock.locked():
        time.sleep(0.001)
    for name, fn in (("ok1", _insert("ok1")), ("broken", broken), ("ok2", _insert("ok2"))):
        threads.append(threading.Thread(target=call, args=(name, fn)))
        threads[-1].start()
    while len(batcher._queue) < 3:
        time.sleep(0.001)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert outcomes["ok1"] == "ok1" and outcomes["ok2"] == "ok2"
    assert isinstance(outcomes["broken"], RuntimeError)
    with make_session_factory(engine)() as session:
        actions = set(session.scalars(select(AuditRecord.action)))
    assert actions == {"slow", "ok1", "ok2"}
    engine.dispose()


def test_a_lone_failure_is_raised_to_its_caller(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    batcher = CommitBatcher(make_session_factory(engine))

    def broken(session: Session) -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        batcher.run(broken)
    engine.dispose()
