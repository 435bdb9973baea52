"""Forward through the queue with SRS, then a bounce to the SRS address reaches the
original sender (SPEC §5, L4407) — real DNS stub, real SMTP on loopback."""

from __future__ import annotations

import email.policy
from email.parser import BytesHeaderParser

import pytest

from mailplane.filters.forwarding import ForwardPlan, plan_forward, return_to_sender
from mailplane.mail.srs import SrsError, srs_from_settings
from mailplane.mailstore.spool import stage_job
from tests.factories.outbound import CaptureFactory, DnsStub, OutboundEnv, WorkerFactory
from tests.factories.queue import STANDARD_ZONE, jobs

ORIGINAL = (
    b"From: alice@sender.test\r\nTo: taro_1@e06.example.net\r\nSubject: hi\r\n"
    b"Message-ID: <fw1@sender.test>\r\n\r\nforward me\r\n"
)


def queue(env: OutboundEnv, kind: str, plan: ForwardPlan) -> None:
    """What the delivery planner queues for this plan, committed."""
    with env.session_factory() as session:
        stage_job(session, spool_dir=env.settings.spool_dir, kind=kind,
                  mail_from=plan.mail_from, recipients=plan.recipients, message=plan.message,
                  now=env.clock.now())
        session.commit()


async def test_forward_uses_srs_and_a_bounce_goes_back_to_the_original_sender(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    env = outbound_env
    dns_stub.zone.update(STANDARD_ZONE)
    destination = capture_mx("127.0.0.2")
    sender_mx = capture_mx("127.0.0.4")
    srs = srs_from_settings(env.settings, env.clock)
    plan = plan_forward(
        raw=ORIGINAL,
        headers=BytesHeaderParser(policy=email.policy.default).parsebytes(ORIGINAL),
        address="taro_1@e06.example.net",
        destinations=("one@dest.test", "two@dest.test", "three@dest.test"),
        envelope_sender="alice@sender.test",
        received="from mx.sender.test by mx.mailplane.test; Mon, 23 Nov 2026",
        srs=srs, max_hops=env.settings.outbound.max_hops,
    )
    assert plan is not None
    queue(env, "forward", plan)
    worker = make_worker(env)
    await worker.run_once()

    [forwarded] = destination.envelopes
    assert sorted(forwarded.rcpt_tos) == ["one@dest.test", "three@dest.test", "two@dest.test"]
    assert forwarded.mail_from.startswith("SRS0=")
    assert forwarded.mail_from.endswith("@srs.mailplane.test")
    assert forwarded.data.endswith(ORIGINAL)

    # The destination bounces to the SRS address; our MX queues it back to the sender.
    bounce = b"From: MAILER-DAEMON@dest.test\r\nSubject: failure\r\n\r\nbounced\r\n"
    queue(env, "srs_return", return_to_sender(
        srs, srs_recipient=forwarded.mail_from.lower(), envelope_sender="", raw=bounce))
    await worker.run_once()

    [returned] = sender_mx.envelopes
    assert (returned.mail_from, returned.rcpt_tos) == ("", ["alice@sender.test"])
    assert returned.data == bounce
    assert {j.status for j in jobs(env)} == {"sent"}


def test_bounce_to_a_forged_srs_address_is_refused(outbound_env: OutboundEnv) -> None:
    srs = srs_from_settings(outbound_env.settings, outbound_env.clock)
    with pytest.raises(SrsError):
        return_to_sender(srs, srs_recipient="SRS0=AAAA=AA=victim.test=bob@srs.mailplane.test",
                         envelope_sender="", raw=b"x\r\n")
