"""An idle worker's poll is one read that claims nothing unless a job is due (so polling
every second costs no write lock and no fsync), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.mailstore.spool import stage_job
from mailplane.storage import outbound_repo
from mailplane.storage.db import make_engine, make_session_factory


def test_a_job_is_due_only_while_queued_unclaimed_and_its_time_has_come(
    db_settings: Settings,
) -> None:
    engine = make_engine(db_settings.database_url)
    factory = make_session_factory(engine)
    clock = FrozenClock()
    with factory() as session:
        assert outbound_repo.due_job_exists(session, now=clock.now()) is False
        stage_job(session, spool_dir=db_settings.spool_dir, kind="forward", mail_from="a@x.test",
                  recipients=["b@y.test"], message=b"Subject: x\r\n\r\nx\r\n", now=clock.now())
        session.commit()
        assert outbound_repo.due_job_exists(session, now=clock.now()) is True
        [claimed] = outbound_repo.claim_due_jobs(session, worker_id="w1", now=clock.now(),
                                                 lease=timedelta(minutes=15), limit=5)
        session.commit()
        assert outbound_repo.due_job_exists(session, now=clock.now()) is False
        # The lease of a vanished worker runs out: the job is due again.
        later = clock.now() + timedelta(minutes=16)
        assert outbound_repo.due_job_exists(session, now=later) is True
        outbound_repo.mark_retry(session, job_id=claimed.id, worker_id="w1",
                                 recipients=["b@y.test"],
                                 next_attempt_at=clock.now() + timedelta(hours=1), error="451")
        session.commit()
        assert outbound_repo.due_job_exists(session, now=clock.now()) is False
        assert outbound_repo.due_job_exists(session, now=clock.now() + timedelta(hours=2))
    engine.dispose()
