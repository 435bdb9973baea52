"""Small system mail (change notices) kept in the job row: queued by the caller's one
commit, sent like any job, with no spool file ever written."""

from __future__ import annotations

import os

import pytest

from mailplane.mailstore.spool import INLINE_MAX_BYTES, stage_inline_job
from tests.factories.outbound import CaptureFactory, DnsStub, OutboundEnv, WorkerFactory
from tests.factories.queue import STANDARD_ZONE, job, make_message


def _stage_inline(env: OutboundEnv, message: bytes) -> str:
    with env.session_factory() as session:
        job_id = stage_inline_job(session, kind="notice", mail_from="",
                                  recipients=["admin@dest.test"], message=message,
                                  now=env.clock.now())
        session.commit()
    return job_id


async def test_an_inline_job_is_sent_from_its_row_and_leaves_no_file(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    dns_stub.zone.update(STANDARD_ZONE)
    preferred = capture_mx("127.0.0.2")
    message = make_message(subject="転送設定の変更")
    job_id = _stage_inline(outbound_env, message)
    spool = outbound_env.settings.spool_dir
    assert not spool.is_dir() or os.listdir(spool) == []

    assert await make_worker(outbound_env).run_once() == 1

    [captured] = preferred.envelopes
    assert captured.rcpt_tos == ["admin@dest.test"]
    assert captured.data.endswith(message)
    row = job(outbound_env, job_id)
    assert (row.status, row.spool_path) == ("sent", "")


def test_inline_jobs_are_for_small_messages_only(outbound_env: OutboundEnv) -> None:
    with pytest.raises(ValueError, match="at most"):
        _stage_inline(outbound_env, b"x" * (INLINE_MAX_BYTES + 1))
