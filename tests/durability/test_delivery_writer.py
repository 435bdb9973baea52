"""DeliveryWriter + persist_batch: deliveries that queue while a batch is written share the
next batch (one transaction, one fsync per directory), each caller hears only about its own
plan, a bad plan fails alone with nothing of it left behind, and no result is given before
the plan is durable."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from mailplane.config.settings import Settings
from mailplane.delivery import store
from mailplane.delivery.jobs import PendingJob
from mailplane.delivery.plan import DeliveryPlan, InboxWrite
from mailplane.delivery.store import persist_batch
from mailplane.delivery.writer import DeliveryWriter
from mailplane.filters.auto_reply_gate import AutoReplyGate, ReplyClaim
from mailplane.mailstore.durability import Syncfs, syncfs_supported
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import OutboundJob
from tests.factories.addresses import add_address

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(db_settings: Settings) -> Settings:
    """Every test here runs on SQLite and on PostgreSQL (the shared transaction, claims)."""
    return db_settings


#: The hosted addresses the plans below deliver to: a plan's recipients must exist when
#: its transaction runs (the store re-checks them, issue 20).
HOSTED = ["a0", "a1", "a2", "a3", "a4", "a5", "away", "bad", "blocked", "disk", "fine",
          "late", "local", "mounted", "ok1", "ok2", "one", "other", "slow", "two"]


@pytest.fixture(autouse=True)
def hosted(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    for local_part in HOSTED:
        add_address(make_session_factory(engine), f"{local_part}@e06.example.net")
    engine.dispose()


@pytest.fixture(params=["fsync", "syncfs"])
def syncfs(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Syncfs | None]:
    """Every persist_batch test runs with both ways of making a batch durable."""
    if request.param == "fsync":
        yield None
        return
    if not syncfs_supported():
        pytest.skip("syncfs(2) with error reporting needs Linux >= 5.8")
    opened = Syncfs([settings.maildir_root, settings.spool_dir, settings.quarantine_root])
    yield opened
    opened.close()


def _plan(address: str, *, forward_to: str | None = None, job_id: str | None = None
          ) -> DeliveryPlan:
    plan = DeliveryPlan(inbox=[InboxWrite(address, f"Subject: to {address}\r\n\r\nhi\r\n"
                                                   .encode())])
    if forward_to is not None:
        job = PendingJob(kind="forward", mail_from="srs@mx.test", recipients=[forward_to],
                         message=b"Subject: fwd\r\n\r\nhi\r\n")
        if job_id is not None:
            job.job_id = job_id
        plan.outbound.append(job)
    return plan


def _inbox(settings: Settings, address: str) -> list[str]:
    new = mailbox_dir(settings.maildir_root, address) / "new"
    return sorted(os.listdir(new)) if new.is_dir() else []


def _leftovers(settings: Settings, address: str) -> list[str]:
    found = []
    for sub in ("tmp", "new"):
        directory = mailbox_dir(settings.maildir_root, address) / sub
        if directory.is_dir():
            found += os.listdir(directory)
    return found


def _spool(settings: Settings) -> list[str]:
    return sorted(os.listdir(settings.spool_dir)) if settings.spool_dir.is_dir() else []


async def test_plans_queued_during_a_batch_share_the_next_one_with_one_commit(
    settings: Settings,
) -> None:
    engine = make_engine(settings.database_url)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    factory = make_session_factory(engine)
    release = threading.Event()
    started = threading.Event()
    sizes: list[int] = []

    def slow_first(s: Settings, f, plans, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(plans))
        started.set()
        if len(sizes) == 1:
            release.wait(10)  # hold the first batch while the others queue up
        return persist_batch(s, f, plans, **kwargs)

    writer = DeliveryWriter(settings, factory, persist=slow_first)
    first = asyncio.create_task(writer.persist(_plan("a0@e06.example.net", forward_to="x@f.test"),
                                               now=NOW))
    assert await asyncio.to_thread(started.wait, 10)
    rest = [asyncio.create_task(writer.persist(
        _plan(f"a{n}@e06.example.net", forward_to="x@f.test"), now=NOW)) for n in range(1, 6)]
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in [first, *rest])  # nothing answered early
    commits.clear()
    release.set()
    assert await asyncio.gather(first, *rest) == [1] * 6
    assert sizes == [1, 5]
    assert len(commits) == 2  # the first batch alone, then the five together
    for n in range(6):
        assert len(_inbox(settings, f"a{n}@e06.example.net")) == 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboundJob)) == 6
    assert len(_spool(settings)) == 6
    await writer.aclose()
    engine.dispose()


def test_a_plan_whose_rows_fail_fails_alone_and_leaves_nothing(
    settings: Settings, syncfs: Syncfs | None,
) -> None:
    """The shared transaction fails on one plan's rows: each plan is retried alone, that
    one fails — its inbox copy and spool file are gone — and the others are stored."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    bad = _plan("bad@e06.example.net", forward_to="x@f.test")

    def broken_row(session: object, *, now: datetime) -> dict[str, object]:
        raise RuntimeError("the database refused this row")

    bad.outbound[0].claimed_row = broken_row  # type: ignore[method-assign]
    plans = [
        (_plan("ok1@e06.example.net", forward_to="x@f.test", job_id="j1"), NOW),
        (bad, NOW),
        (_plan("ok2@e06.example.net"), NOW),
    ]
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    results = persist_batch(settings, factory, plans, syncfs=syncfs)
    assert results[0] == 1 and results[2] == 0
    assert isinstance(results[1], RuntimeError)
    assert len(commits) == 1  # the shared one rolled back; ok1 alone (ok2 has no rows)
    assert len(_inbox(settings, "ok1@e06.example.net")) == 1
    assert len(_inbox(settings, "ok2@e06.example.net")) == 1
    assert _leftovers(settings, "bad@e06.example.net") == []
    assert _spool(settings) == ["j1.eml"]
    with factory() as session:
        assert session.scalars(select(OutboundJob.id)).all() == ["j1"]
    engine.dispose()


def test_a_plan_whose_mailbox_cannot_be_written_fails_alone(
    settings: Settings, syncfs: Syncfs | None,
) -> None:
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    blocked = mailbox_dir(settings.maildir_root, "blocked@e06.example.net")
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the mailbox should be")
    results = persist_batch(settings, factory, [
        (_plan("blocked@e06.example.net", forward_to="x@f.test"), NOW),
        (_plan("fine@e06.example.net", forward_to="x@f.test"), NOW),
    ], syncfs=syncfs)
    assert isinstance(results[0], OSError)
    assert results[1] == 1
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboundJob)) == 1
    assert len(_spool(settings)) == 1
    engine.dispose()


def test_a_failed_directory_fsync_fails_the_plans_that_needed_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No 250 for a rename that may not survive a crash; the rows it committed are removed."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    real = store.fsync_dir
    broken = mailbox_dir(settings.maildir_root, "disk@e06.example.net") / "new"

    def fsync_dir(path: Path) -> None:
        if path == broken:
            raise OSError(5, "Input/output error")
        real(path)

    monkeypatch.setattr(store, "fsync_dir", fsync_dir)
    results = persist_batch(settings, factory, [
        (_plan("disk@e06.example.net", forward_to="x@f.test"), NOW),
        (_plan("other@e06.example.net", forward_to="x@f.test"), NOW),
    ])
    assert isinstance(results[0], OSError) and results[1] == 1
    assert _leftovers(settings, "disk@e06.example.net") == []
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(OutboundJob)) == 1
    assert len(_spool(settings)) == 1
    engine.dispose()


async def test_the_writer_raises_a_plans_error_to_its_caller_and_restarts_after_close(
    settings: Settings,
) -> None:
    engine = make_engine(settings.database_url)
    writer = DeliveryWriter(settings, make_session_factory(engine))
    blocked = mailbox_dir(settings.maildir_root, "blocked@e06.example.net")
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("not a directory")
    with pytest.raises(OSError):
        await writer.persist(_plan("blocked@e06.example.net"), now=NOW)
    await writer.aclose()
    assert await writer.persist(_plan("late@e06.example.net"), now=NOW) == 0
    assert len(_inbox(settings, "late@e06.example.net")) == 1
    await writer.aclose()
    engine.dispose()


def test_a_failed_syncfs_fails_every_plan_of_the_step_and_leaves_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not syncfs_supported():
        pytest.skip("syncfs(2) with error reporting needs Linux >= 5.8")
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    syncfs = Syncfs([settings.maildir_root, settings.spool_dir, settings.quarantine_root])
    calls: list[int] = []
    real_sync = syncfs.sync

    def sync(directories):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:  # the step that publishes the inbox copies
            raise OSError(5, "syncfs: Input/output error")
        return real_sync(directories)

    monkeypatch.setattr(syncfs, "sync", sync)
    results = persist_batch(settings, factory, [
        (_plan("one@e06.example.net", forward_to="x@f.test"), NOW),
        (_plan("two@e06.example.net"), NOW),
    ], syncfs=syncfs)
    assert all(isinstance(result, OSError) for result in results)
    for address in ("one@e06.example.net", "two@e06.example.net"):
        assert _leftovers(settings, address) == []
    assert _spool(settings) == []
    with factory() as session:  # the committed row was taken back
        assert session.scalar(select(func.count()).select_from(OutboundJob)) == 0
    syncfs.close()
    engine.dispose()


def test_a_mailbox_on_another_filesystem_is_fsynced_the_classic_way(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A directory whose filesystem was not open at start-up (a mount inside the maildir
    tree; here a symlink to tmpfs) is not covered by the roots' syncfs: its files and
    directory are fsynced one by one, and the mail is stored."""
    if not syncfs_supported() or not Path("/dev/shm").is_dir():
        pytest.skip("needs syncfs(2) and a tmpfs at /dev/shm")
    elsewhere = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        mailbox = mailbox_dir(settings.maildir_root, "mounted@e06.example.net")
        mailbox.parent.mkdir(parents=True, exist_ok=True)
        mailbox.symlink_to(elsewhere)
        syncfs = Syncfs([settings.maildir_root, settings.spool_dir, settings.quarantine_root])
        assert os.stat(elsewhere).st_dev != os.stat(settings.maildir_root).st_dev
        foreign: list[Path] = []
        real_sync = syncfs.sync

        def sync(directories):  # type: ignore[no-untyped-def]
            result = real_sync(directories)
            foreign.extend(result)
            return result

        syncfs.sync = sync  # type: ignore[method-assign]
        engine = make_engine(settings.database_url)
        results = persist_batch(settings, make_session_factory(engine), [
            (_plan("mounted@e06.example.net"), NOW), (_plan("local@e06.example.net"), NOW),
        ], syncfs=syncfs)
        assert results == [0, 0]
        assert {path.name for path in foreign} == {"tmp", "new"}
        assert len(_inbox(settings, "mounted@e06.example.net")) == 1
        assert len(_inbox(settings, "local@e06.example.net")) == 1
        syncfs.close()
        engine.dispose()
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_two_plans_of_one_batch_replying_to_one_sender_queue_one_reply(
    settings: Settings, syncfs: Syncfs | None,
) -> None:
    """The 24 h ledger claims of a batch run in its one transaction: the second claim
    sees the first and loses, and its spool file is removed (SPEC §6)."""
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    plans = []
    gate = AutoReplyGate.from_settings(settings)
    for _ in range(2):
        plan = _plan("away@e06.example.net")
        plan.outbound.append(PendingJob(
            kind="auto_reply", mail_from="", recipients=["bob@sender.test"],
            message=b"Subject: Re:\r\n\r\n\xe4\xb8\x8d\xe5\x9c\xa8\r\n",
            condition=ReplyClaim(gate, "away@e06.example.net", "bob@sender.test", NOW),
            origin="away@e06.example.net"))
        plans.append((plan, NOW))
    assert persist_batch(settings, factory, plans, syncfs=syncfs) == [1, 0]
    with factory() as session:
        assert session.scalars(select(OutboundJob.kind)).all() == ["auto_reply"]
    assert len(_spool(settings)) == 1
    assert len(_inbox(settings, "away@e06.example.net")) == 2
    engine.dispose()


async def test_a_delivery_after_close_gets_its_own_thread_and_both_stop(
    settings: Settings,
) -> None:
    """Submission closes the MX handler's writer while a batch is being written, and an
    MX delivery arrives right after: the new thread must not take the old one's stop mark
    (that left the first close waiting forever), and both closes finish."""
    engine = make_engine(settings.database_url)
    release = threading.Event()
    started = threading.Event()
    calls: list[int] = []

    def first_one_slow(s: Settings, f, plans, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(plans))
        if len(calls) == 1:
            started.set()
            release.wait(10)
        return persist_batch(s, f, plans, **kwargs)

    writer = DeliveryWriter(settings, make_session_factory(engine), persist=first_one_slow)
    slow = asyncio.create_task(writer.persist(_plan("slow@e06.example.net"), now=NOW))
    assert await asyncio.to_thread(started.wait, 10)
    first_close = asyncio.create_task(writer.aclose())
    await asyncio.sleep(0.05)  # the stop mark is queued behind the slow batch
    late = asyncio.create_task(writer.persist(_plan("late@e06.example.net"), now=NOW))
    assert await asyncio.wait_for(late, 10) == 0
    release.set()
    assert await asyncio.wait_for(slow, 10) == 0
    await asyncio.wait_for(first_close, 10)
    await asyncio.wait_for(writer.aclose(), 10)
    for address in ("slow@e06.example.net", "late@e06.example.net"):
        assert len(_inbox(settings, address)) == 1
    engine.dispose()
