"""The queue keeps every job across restarts and never lets two workers send one job."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.mailstore.spool import spool_path, sweep_orphan_spool_files, write_spool_file
from mailplane.storage import outbound_repo
from mailplane.storage.db import make_engine, make_session_factory
from tests.factories.outbound import CaptureFactory, CaptureMx, DnsStub, OutboundEnv, WorkerFactory
from tests.factories.queue import STANDARD_ZONE, jobs, make_message, parse, stage


def _message_ids(capture: CaptureMx) -> list[str]:
    return [str(parse(e.data)["Message-ID"]) for e in capture.envelopes]


async def test_queue_survives_a_restart_without_losing_or_repeating_a_job(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    dns_stub.zone.update(STANDARD_ZONE)
    remote = capture_mx("127.0.0.2")
    for n in range(6):
        stage(outbound_env, recipients=["bob@dest.test"], message=make_message(f"<{n}@s>"))
    # Process 1 delivers two jobs, then claims two more and "crashes" before sending them.
    first = make_worker(outbound_env, "node-1", batch_size=2)
    assert await first.run_once() == 2
    with outbound_env.session_factory() as session:
        crashed = outbound_repo.claim_due_jobs(
            session, worker_id="node-1-crashed", now=outbound_env.clock.now(),
            lease=timedelta(minutes=15), limit=2,
        )
        session.commit()
    assert len(crashed) == 2

    # Process 2: a new engine, new worker, same database and spool.
    engine = make_engine(outbound_env.settings.database_url)
    restarted = OutboundEnv(outbound_env.settings, make_session_factory(engine),
                            outbound_env.clock)
    second = make_worker(restarted, "node-2")
    assert await second.run_once() == 2  # the two nobody holds
    assert await second.run_once() == 0  # the crashed ones are still leased
    restarted.clock.advance(timedelta(minutes=16))
    assert await second.run_once() == 2  # lease expired: taken over
    assert await second.run_once() == 0

    assert sorted(_message_ids(remote)) == sorted(f"<{n}@s>" for n in range(6))
    assert {j.status for j in jobs(restarted)} == {"sent"}
    engine.dispose()


async def test_two_workers_drain_50_jobs_each_sent_exactly_once(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    dns_stub.zone.update(STANDARD_ZONE)
    remote = capture_mx("127.0.0.2")
    for n in range(50):
        stage(outbound_env, recipients=["bob@dest.test"], message=make_message(f"<{n}@s>"))
    engine = make_engine(outbound_env.settings.database_url)
    other = OutboundEnv(outbound_env.settings, make_session_factory(engine), outbound_env.clock)
    workers = [make_worker(outbound_env, "a", batch_size=5), make_worker(other, "b", batch_size=5)]

    while sum(await asyncio.gather(*(w.run_once() for w in workers))):
        pass

    counts = Counter(_message_ids(remote))
    assert len(counts) == 50
    assert set(counts.values()) == {1}
    engine.dispose()


def _concurrent_claims(settings: Settings, *, claimers: int = 2) -> list[list[str]]:
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    clock = FrozenClock()
    with factory() as session:
        from mailplane.mailstore.spool import stage_job

        for _ in range(50):
            stage_job(session, spool_dir=settings.spool_dir, kind="notice", mail_from="a@b.test",
                      recipients=["c@d.test"], message=b"Subject: x\r\n\r\nx\r\n",
                      now=clock.now())
        session.commit()
    claimed: list[list[str]] = [[] for _ in range(claimers)]
    barrier = threading.Barrier(claimers)

    def claimer(index: int) -> None:
        barrier.wait()
        while True:
            with factory() as session:
                batch = outbound_repo.claim_due_jobs(
                    session, worker_id=f"w{index}", now=clock.now(),
                    lease=timedelta(minutes=5), limit=3,
                )
                for job in batch:
                    outbound_repo.mark_sent(session, job_id=job.id, worker_id=f"w{index}")
                session.commit()
            if not batch:
                return
            claimed[index].extend(job.id for job in batch)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    engine.dispose()
    return claimed


def test_concurrent_claimers_never_share_a_job(db_settings: Settings) -> None:
    """Runs on SQLite and on PostgreSQL (FOR UPDATE SKIP LOCKED)."""
    claimed = _concurrent_claims(db_settings)
    everything = [job_id for batch in claimed for job_id in batch]
    assert len(everything) == 50
    assert len(set(everything)) == 50


async def test_run_delivers_when_woken_and_stop_finishes_cleanly(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    dns_stub.zone.update(STANDARD_ZONE)
    remote = capture_mx("127.0.0.2")
    worker = make_worker(outbound_env, poll_seconds=30.0)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0)
    await asyncio.to_thread(stage, outbound_env, recipients=["bob@dest.test"])
    worker.wake()
    for _ in range(500):
        if remote.envelopes:
            break
        await asyncio.sleep(0.01)
    assert len(remote.envelopes) == 1
    await worker.stop()
    assert task.done()
    await task


async def test_stop_hands_back_claimed_jobs_it_did_not_start(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    dns_stub.zone.update(STANDARD_ZONE)
    capture_mx("127.0.0.2")
    for _ in range(3):
        stage(outbound_env, recipients=["bob@dest.test"])
    worker = make_worker(outbound_env)
    worker._stopping = True  # as if stop() arrived right after the claim
    assert await worker.run_once() == 3
    assert {(j.status, j.claimed_by) for j in jobs(outbound_env)} == {("queued", None)}


def test_orphan_spool_files_are_swept_but_queued_ones_kept(outbound_env: OutboundEnv) -> None:
    spool = outbound_env.settings.spool_dir
    kept_id = stage(outbound_env, recipients=["bob@dest.test"])
    orphan = write_spool_file(spool, "orphan0001", b"Subject: lost commit\r\n\r\n")
    fresh_orphan = write_spool_file(spool, "orphan0002", b"Subject: committing now\r\n\r\n")
    old = time.time() - 7200
    for path in (orphan, spool_path(spool, kept_id)):
        os.utime(path, (old, old))

    with outbound_env.session_factory() as session:
        assert sweep_orphan_spool_files(session, spool_dir=spool) == 1

    assert not orphan.exists()
    assert fresh_orphan.exists()  # might still be committed by its caller
    assert spool_path(spool, kept_id).exists()


def test_staging_needs_a_recipient(outbound_env: OutboundEnv) -> None:
    with pytest.raises(ValueError, match="recipient"):
        stage(outbound_env, recipients=[])
