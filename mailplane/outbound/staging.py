"""What the MX pipeline calls inside its delivery transaction (blocking: run in a thread).

Each function adds rows to the caller's session and spools files; the caller commits
together with its own writes before answering 250, then calls ``OutboundWorker.wake()``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import Message

from sqlalchemy.orm import Session

from mailplane.outbound.auto_reply import build_reply
from mailplane.outbound.forwarding import ForwardPlan
from mailplane.outbound.queue import stage_job
from mailplane.outbound.srs import Srs
from mailplane.settings import Settings
from mailplane.storage.auto_reply_ledger_repo import claim_reply

log = logging.getLogger(__name__)


def stage_forward(session: Session, *, settings: Settings, plan: ForwardPlan,
                  now: datetime) -> str:
    """Queue the forward computed by ``forwarding.plan_forward`` (SPEC §5)."""
    return stage_job(
        session, spool_dir=settings.spool_dir, kind="forward", mail_from=plan.mail_from,
        recipients=plan.recipients, message=plan.message, now=now,
    )


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
    """Claim the 24 h ledger slot and, if won, queue the reply (SPEC §6).

    Call only after ``auto_reply.suppression_reason`` returned None and
    ``auto_reply.choose_message`` returned a body.  Returns the job id, or None when a
    reply already went to this sender within 24 hours (claim lost).
    """
    if not claim_reply(session, address=address, sender=sender, now=now):
        log.info("auto-reply %s → %s: already replied within 24 h", address, sender)
        return None
    reply = build_reply(
        address=address, sender=sender, original_headers=original_headers, body=body,
        hostname=settings.mx.hostname, now=now, tz=settings.tz, subject=subject,
    )
    return stage_job(
        session, spool_dir=settings.spool_dir, kind="auto_reply",
        mail_from=address if envelope_from_address else "",
        recipients=[sender], message=reply, now=now,
    )


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
    """Send mail (normally a bounce) that arrived for one of our SRS addresses on to the
    original sender (SPEC §5, L4407).  ``srs.reverse`` raises ``SrsError`` for a forged or
    expired address — check it at RCPT time and answer 550 there."""
    original = srs.reverse(srs_recipient)
    return stage_job(
        session, spool_dir=settings.spool_dir, kind="srs_return",
        mail_from=srs.forward(envelope_sender), recipients=[original], message=raw, now=now,
    )
