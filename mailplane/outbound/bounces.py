"""The DSN of a job's failed recipients (RFC 3464), staged by the worker in the transaction
that records the failure.

- sent with the null envelope sender; never built for a null-sender job (RFC 3464 §2, RFC
  5321 §4.5.5: no bounce of a bounce);
- addressed to the job's envelope sender — unless that is one of our SRS addresses (a
  forward leaving the platform): then to the original sender it stands for (SPEC §5,
  L4407), never to the SRS alias itself, which no MX resolves.  A hosted original sender
  gets it through the local transport like any other queued mail.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from mailplane.config.settings import Settings
from mailplane.mail.dsn import FailedRecipient, build_dsn
from mailplane.mail.srs import Srs, SrsError
from mailplane.mailstore.spool import stage_job
from mailplane.outbound.smtp_transport import RecipientResult
from mailplane.storage.outbound_repo import ClaimedJob

log = logging.getLogger(__name__)


class Bounces:
    def __init__(self, settings: Settings, srs: Srs) -> None:
        self.settings = settings
        self.srs = srs

    def recipient(self, mail_from: str) -> str | None:
        """Who gets the DSN of a job sent from ``mail_from``; None for the null sender
        and for an SRS address that no longer verifies (it would only come back here)."""
        if not mail_from:
            return None
        if not self.srs.is_srs_address(mail_from):
            return mail_from
        try:
            return self.srs.reverse(mail_from)
        except SrsError as exc:
            log.warning("DSN for SRS sender %s not sent: %s", mail_from, exc)
            return None

    def stage(self, session: Session, job: ClaimedJob, message: bytes,
              failed: list[RecipientResult], now: datetime) -> bool:
        """Add the DSN job to ``session`` (the caller commits); False when none is due."""
        sender = self.recipient(job.mail_from)
        if sender is None:
            log.info("outbound job %s: no DSN for sender <%s>", job.id, job.mail_from)
            return False
        dsn = build_dsn(
            original=message,
            original_sender=sender,
            failures=[FailedRecipient(r.recipient, r.status, r.diagnostic, r.remote_mta)
                      for r in failed],
            reporting_mta=self.settings.mx.hostname,
            arrival_date=job.created_at,
            now=now,
        )
        stage_job(session, spool_dir=self.settings.spool_dir, kind="dsn", mail_from="",
                  recipients=[sender], message=dsn, now=now)
        return True
