"""Small helpers shared by the outbound tests."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message

from sqlalchemy import select

from mailplane.mailstore.spool import stage_job
from mailplane.storage.models import OutboundJob
from tests.factories.messages import message
from tests.factories.outbound import OutboundEnv, Zone

STANDARD_ZONE: Zone = {
    "dest.test": {"MX": [(20, "mx2.dest.test"), (10, "mx1.dest.test")]},
    "mx1.dest.test": {"A": ["127.0.0.2"]},
    "mx2.dest.test": {"A": ["127.0.0.3"]},
    "nomx.test": {"A": ["127.0.0.3"]},
    "nullmx.test": {"MX": [(0, ".")]},
    "sender.test": {"MX": [(10, "mx.sender.test")]},
    "mx.sender.test": {"A": ["127.0.0.4"]},
}


def make_message(message_id: str = "<m1@sender.test>", subject: str = "Hello") -> bytes:
    """Alice's message to bob@dest.test, as the queue tests relay it."""
    return message(sender="alice@sender.test", sender_name="Alice", to="bob@dest.test",
                   subject=subject, message_id=message_id, date=None, body="Hi Bob.\r\n")


def stage(
    env: OutboundEnv,
    *,
    recipients: list[str],
    mail_from: str = "alice@sender.test",
    message: bytes | None = None,
    kind: str = "forward",
) -> str:
    with env.session_factory() as session:
        job_id = stage_job(
            session, spool_dir=env.settings.spool_dir, kind=kind, mail_from=mail_from,
            recipients=recipients, message=message or make_message(), now=env.clock.now(),
        )
        session.commit()
    return job_id


def jobs(env: OutboundEnv) -> list[OutboundJob]:
    with env.session_factory() as session:
        return list(session.scalars(select(OutboundJob).order_by(OutboundJob.created_at)))


def job(env: OutboundEnv, job_id: str) -> OutboundJob:
    with env.session_factory() as session:
        found = session.get(OutboundJob, job_id)
        assert found is not None
        return found


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def dsn_parts(data: bytes) -> tuple[EmailMessage, EmailMessage, list[Message], EmailMessage]:
    """(report, human part, delivery-status blocks, returned headers part) of a DSN."""
    report = parse(data)
    parts = report.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    human, status_part, headers_part = parts
    assert isinstance(human, EmailMessage) and isinstance(headers_part, EmailMessage)
    assert isinstance(status_part, EmailMessage)
    blocks = status_part.get_payload()
    assert isinstance(blocks, list)
    return report, human, [status_part, *blocks], headers_part
