"""The outbound worker against a DNS stub and capture MX servers on loopback (issue 4)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from mailplane.clock import as_utc
from tests.factories.outbound import CaptureFactory, DnsStub, OutboundEnv, WorkerFactory
from tests.factories.queue import STANDARD_ZONE, dsn_parts, job, jobs, make_message, stage


def _zone(dns_stub: DnsStub) -> None:
    dns_stub.zone.update(STANDARD_ZONE)


async def test_mx_hosts_are_tried_in_preference_order(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    preferred = capture_mx("127.0.0.2")
    backup = capture_mx("127.0.0.3")
    job_id = stage(outbound_env, recipients=["bob@dest.test"])

    assert await make_worker(outbound_env).run_once() == 1

    assert [e.rcpt_tos for e in preferred.envelopes] == [["bob@dest.test"]]
    assert backup.envelopes == []
    assert preferred.envelopes[0].mail_from == "alice@sender.test"
    assert job(outbound_env, job_id).status == "sent"
    spool_file = Path(job(outbound_env, job_id).spool_path)
    assert not await asyncio.to_thread(spool_file.exists)


async def test_next_mx_host_is_tried_when_the_preferred_one_is_down(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    backup = capture_mx("127.0.0.3")  # nothing listens on mx1 (127.0.0.2)
    stage(outbound_env, recipients=["bob@dest.test"])

    await make_worker(outbound_env).run_once()

    assert [e.rcpt_tos for e in backup.envelopes] == [["bob@dest.test"]]


async def test_domain_without_mx_falls_back_to_its_a_record(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    implicit = capture_mx("127.0.0.3")
    stage(outbound_env, recipients=["carol@nomx.test"])

    await make_worker(outbound_env).run_once()

    assert [e.rcpt_tos for e in implicit.envelopes] == [["carol@nomx.test"]]
    assert ("nomx.test", "MX") in dns_stub.queries
    assert ("nomx.test", "A") in dns_stub.queries


async def test_null_mx_domain_fails_at_once_with_a_dsn(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    sender_mx = capture_mx("127.0.0.4")
    job_id = stage(outbound_env, recipients=["dave@nullmx.test"])
    worker = make_worker(outbound_env)

    await worker.run_once()
    await worker.run_once()

    assert job(outbound_env, job_id).status == "failed"
    [dsn] = sender_mx.envelopes
    _report, _human, [_part, _per_message, per_recipient], _headers = dsn_parts(dsn.data)
    assert per_recipient["Status"] == "5.1.10"


async def test_smarthost_receives_everything_with_auth(
    make_outbound_env: object, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory, mx_port: int,
) -> None:
    assert callable(make_outbound_env)
    env: OutboundEnv = make_outbound_env(outbound={
        "smarthost": "127.0.0.5", "smarthost_port": mx_port,
        "smarthost_username": "relay", "smarthost_password": "s3cret",
    })
    smarthost = capture_mx("127.0.0.5", users={"relay": "s3cret"})
    stage(env, recipients=["bob@dest.test", "carol@nomx.test"])

    await make_worker(env).run_once()

    assert [sorted(e.rcpt_tos) for e in smarthost.envelopes] == [
        ["bob@dest.test", "carol@nomx.test"]
    ]
    assert smarthost.handler.auth_logins == ["relay"]
    assert dns_stub.queries == []  # a smarthost needs no MX lookup


async def test_451_is_retried_after_the_backoff_then_delivered(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    remote = capture_mx("127.0.0.2")
    remote.handler.rcpt_replies["bob@dest.test"] = "451 4.7.1 greylisted, try later"
    job_id = stage(outbound_env, recipients=["bob@dest.test"])
    worker = make_worker(outbound_env)

    await worker.run_once()
    row = job(outbound_env, job_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "451 4.7.1 greylisted" in row.last_error
    assert as_utc(row.next_attempt_at) == outbound_env.clock.now() + timedelta(seconds=60)

    outbound_env.clock.advance(timedelta(seconds=30))
    assert await worker.run_once() == 0  # not due yet

    del remote.handler.rcpt_replies["bob@dest.test"]
    outbound_env.clock.advance(timedelta(seconds=31))
    assert await worker.run_once() == 1
    assert [e.rcpt_tos for e in remote.envelopes] == [["bob@dest.test"]]
    assert job(outbound_env, job_id).status == "sent"


async def test_backoff_doubles_and_is_capped(
    make_outbound_env: object, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    assert callable(make_outbound_env)
    env: OutboundEnv = make_outbound_env(outbound={"max_backoff_seconds": 150})
    _zone(dns_stub)
    remote = capture_mx("127.0.0.2")
    remote.handler.rcpt_replies["bob@dest.test"] = "421 4.3.0 busy"
    job_id = stage(env, recipients=["bob@dest.test"])
    worker = make_worker(env)
    delays = []
    for _ in range(3):
        await worker.run_once()
        next_at = as_utc(job(env, job_id).next_attempt_at)
        delays.append((next_at - env.clock.now()).total_seconds())
        env.clock.set(next_at)
    assert delays == [60, 120, 150]


async def test_550_fails_the_recipient_and_sends_a_dsn_to_the_sender(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    remote = capture_mx("127.0.0.2")
    sender_mx = capture_mx("127.0.0.4")
    remote.handler.rcpt_replies["nobody@dest.test"] = "550 5.1.1 no such user"
    job_id = stage(outbound_env, recipients=["bob@dest.test", "nobody@dest.test"])
    worker = make_worker(outbound_env)

    await worker.run_once()
    assert [e.rcpt_tos for e in remote.envelopes] == [["bob@dest.test"]]
    assert job(outbound_env, job_id).status == "sent"  # bob got it; nobody is in the DSN
    [dsn_job] = [j for j in jobs(outbound_env) if j.kind == "dsn"]
    assert (dsn_job.mail_from, dsn_job.recipients) == ("", ["alice@sender.test"])

    await worker.run_once()
    [dsn] = sender_mx.envelopes
    assert (dsn.mail_from, dsn.rcpt_tos) == ("", ["alice@sender.test"])
    report, human, [status_part, per_message, per_recipient], headers_part = dsn_parts(dsn.data)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert "nobody@dest.test" in human.get_content()
    assert status_part.get_content_type() == "message/delivery-status"
    assert per_message["Reporting-MTA"] == f"dns; {outbound_env.settings.mx.hostname}"
    assert per_recipient["Final-Recipient"] == "rfc822; nobody@dest.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert "550 5.1.1 no such user" in per_recipient["Diagnostic-Code"]
    assert headers_part.get_content_type() == "text/rfc822-headers"
    returned = headers_part.get_payload(decode=True)
    assert isinstance(returned, bytes) and b"Message-ID: <m1@sender.test>" in returned


async def test_lifetime_expiry_turns_a_temporary_failure_into_a_dsn(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    remote = capture_mx("127.0.0.2")
    sender_mx = capture_mx("127.0.0.4")
    remote.handler.rcpt_replies["bob@dest.test"] = "451 4.3.0 still busy"
    job_id = stage(outbound_env, recipients=["bob@dest.test"])
    worker = make_worker(outbound_env)

    await worker.run_once()
    assert job(outbound_env, job_id).status == "queued"
    outbound_env.clock.advance(timedelta(hours=outbound_env.settings.outbound.lifetime_hours))
    await worker.run_once()
    assert job(outbound_env, job_id).status == "failed"

    await worker.run_once()
    [dsn] = sender_mx.envelopes
    _report, _human, [_part, _per_message, per_recipient], _headers = dsn_parts(dsn.data)
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"].startswith("5.")
    assert "still busy" in per_recipient["Diagnostic-Code"]


async def test_no_dsn_for_a_null_sender_job(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    remote = capture_mx("127.0.0.2")
    remote.handler.rcpt_replies["bob@dest.test"] = "550 5.1.1 no such user"
    job_id = stage(outbound_env, recipients=["bob@dest.test"], mail_from="", kind="dsn")

    await make_worker(outbound_env).run_once()

    assert job(outbound_env, job_id).status == "failed"
    assert [j.id for j in jobs(outbound_env)] == [job_id]  # no bounce of a bounce


async def test_null_sender_is_sent_as_empty_reverse_path(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _zone(dns_stub)
    remote = capture_mx("127.0.0.2")
    stage(outbound_env, recipients=["bob@dest.test"], mail_from="", kind="auto_reply",
          message=make_message(subject="Re: hi"))

    await make_worker(outbound_env).run_once()

    assert [e.mail_from for e in remote.envelopes] == [""]
