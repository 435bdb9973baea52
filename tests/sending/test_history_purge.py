"""Finished outbound jobs are kept for retention.outbound_history_days, then purged;
queued jobs are never touched, however old."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from mailplane.delivery.retention import purge_outbound_history
from mailplane.storage.models import OutboundJob
from tests.factories.outbound import OutboundEnv
from tests.factories.queue import jobs, stage


def test_old_sent_and_failed_rows_go_and_queued_ones_stay(outbound_env: OutboundEnv) -> None:
    env = outbound_env
    sent = stage(env, recipients=["a@dest.test"])
    failed = stage(env, recipients=["b@dest.test"])
    queued = stage(env, recipients=["c@dest.test"])
    with env.session_factory() as session:
        session.execute(update(OutboundJob).where(OutboundJob.id == sent).values(status="sent"))
        session.execute(update(OutboundJob).where(OutboundJob.id == failed)
                        .values(status="failed"))
        session.commit()
    env.clock.advance(timedelta(days=29))
    assert purge_outbound_history(env.settings, env.session_factory, env.clock) == 0
    env.clock.advance(timedelta(days=2))
    assert purge_outbound_history(env.settings, env.session_factory, env.clock) == 2
    assert [j.id for j in jobs(env)] == [queued]
