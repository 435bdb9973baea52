"""What the MX pipeline queues with a delivery: forwards, auto-replies, SRS returns.

Each builder returns a :class:`~mailplane.outbound.queue.PendingJob`; ``persist`` spools
them before its transaction and stages their rows inside it, together with its own writes,
before the 250 (then wakes the worker).  The ``stage_*`` functions do both steps at once
for callers that already hold a session.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import Message

from sqlalchemy.orm import Session

from mailplane.outbound.auto_reply import build_reply
from mailplane.outbound.forwarding import ForwardPlan
from mailplane.outbound.queue import PendingJob
from mailplane.outbound.recent_replies import RecentReplies
from mailplane.outbound.srs import Srs
from mailplane.settings import Settings
from mailplane.storage.auto_reply_ledger_repo import REPLY_WINDOW, claim_reply, last_reply_at

log = logging.getLogger(__name__)


def forward_job(plan: ForwardPlan) -> PendingJob:
    """The forward computed by ``forwarding.plan_forward`` (SPEC §5)."""
    return PendingJob(kind="forward", mail_from=plan.mail_from, recipients=plan.recipients,
                      message=plan.message)


def auto_reply_job(
    *,
    settings: Settings,
    address: str,
    sender: str,
    original_headers: Message,
    body: str,
    now: datetime,
    subject: str | None = None,
    envelope_from_address: bool = False,
    recent: RecentReplies | None = None,
) -> PendingJob:
    """The reply, queued only if this call wins the 24 h ledger claim (SPEC §6).

    Call only after ``auto_reply.suppression_reason`` returned None and
    ``auto_reply.choose_message`` returned a body.
    """
    reply = build_reply(
        address=address, sender=sender, original_headers=original_headers, body=body,
        hostname=settings.mx.hostname, now=now, tz=settings.tz, subject=subject,
    )

    def claim(session: Session) -> bool:
        if not claim_reply(session, address=address, sender=sender, now=now):
            log.info("auto-reply %s → %s: already replied within 24 h", address, sender)
            if recent is not None:
                # Another process (or node) won: remember *its* reply time, so this
                # process stops building and claiming a reply on every message from
                # this sender, yet still replies once that reply's 24 h are over.
                won_at = last_reply_at(session, address=address, sender=sender)
                if won_at is not None:
                    recent.remember(address, sender, won_at)
            return False
        if recent is not None:
            recent.remember(address, sender, now)
        return True

    return PendingJob(kind="auto_reply", mail_from=address if envelope_from_address else "",
                      recipients=[sender], message=reply, claim=claim)


def srs_return_job(*, srs: Srs, srs_recipient: str, envelope_sender: str,
                   raw: bytes) -> PendingJob:
    """Mail (normally a bounce) that arrived for one of our SRS addresses, sent on to the
    original sender (SPEC §5, L4407).  ``srs.reverse`` raises ``SrsError`` for a forged or
    expired address — the MX checks it at RCPT time and answers 550 there."""
    return PendingJob(kind="srs_return", mail_from=srs.forward(envelope_sender),
                      recipients=[srs.reverse(srs_recipient)], message=raw)


def _stage_now(session: Session, job: PendingJob, settings: Settings,
               now: datetime) -> str | None:
    job.spool(settings.spool_dir)
    job_id = job.stage(session, now=now)
    if job_id is None:
        job.discard()
    return job_id


def stage_forward(session: Session, *, settings: Settings, plan: ForwardPlan,
                  now: datetime) -> str:
    job_id = _stage_now(session, forward_job(plan), settings, now)
    assert job_id is not None
    return job_id


def stage_auto_reply(
    session: Session,
    *,
    settings: Settings,
    address: str,
    sender: str,
    original_headers: Message,
    body: str,
    now: datetime,
    subject: str | None = None,
    envelope_from_address: bool = False,
) -> str | None:
    """Claim the ledger and queue the reply; None when this sender already had one."""
    job = auto_reply_job(settings=settings, address=address, sender=sender,
                         original_headers=original_headers, body=body, now=now,
                         subject=subject, envelope_from_address=envelope_from_address)
    return _stage_now(session, job, settings, now)


def stage_srs_return(
    session: Session,
    *,
    settings: Settings,
    srs: Srs,
    srs_recipient: str,
    envelope_sender: str,
    raw: bytes,
    now: datetime,
) -> str:
    job = srs_return_job(srs=srs, srs_recipient=srs_recipient,
                         envelope_sender=envelope_sender, raw=raw)
    job_id = _stage_now(session, job, settings, now)
    assert job_id is not None
    return job_id


__all__ = ["REPLY_WINDOW", "auto_reply_job", "forward_job", "srs_return_job",
           "stage_auto_reply", "stage_forward", "stage_srs_return"]
