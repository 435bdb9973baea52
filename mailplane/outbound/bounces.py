"""The DSN of a job's failed recipients (RFC 3464), staged by the worker in the transaction
that records the failure.

- sent with the null envelope sender; never built for a null-sender job (RFC 3464 §2, RFC
  5321 §4.5.5: no bounce of a bounce);
- addressed to the job's envelope sender — unless that is one of our SRS addresses (a
  forward leaving the platform): then to the original sender it stands for (SPEC §5,
  L4407), never to the SRS alias itself, which no MX resolves.  A hosted original sender
  gets it through the local transport like any other queued mail;
- never to a sender that did not authenticate (the job's ``bounce_to_sender``: a forward
  of mail whose sender failed SPF and DKIM at our MX): a forged sender gets no
  backscatter (SPEC §5, issue 20);
- at most ``outbound.dsn_per_recipient_per_hour`` to one recipient, every node together
  (``rate_counters``): failures past it are recorded, not reported;
- carrying the original's header section only (``text/rfc822-headers``, RFC 3462), never
  its body (:mod:`mailplane.mail.dsn`).

A forward that failed for good with keep-copy OFF also comes back to the inbox it was
forwarded from, with a notice (:meth:`Bounces.stage_return`): nothing is lost.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from mailplane import metrics
from mailplane.auth.send_quota import Quota, charge_in, window_at
from mailplane.config.settings import Settings
from mailplane.delivery.jobs import FORWARD_RETURN
from mailplane.mail.dsn import FailedRecipient, build_dsn
from mailplane.mail.srs import Srs, SrsError
from mailplane.mailstore.spool import stage_job
from mailplane.net.throttled_log import ThrottledLog
from mailplane.notices.forward_failed import forward_failed_notice
from mailplane.outbound.smtp_transport import RecipientResult
from mailplane.storage.outbound_repo import ClaimedJob

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)


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
        if not job.bounce_to_sender:
            metrics.DSNS_WITHHELD.labels("unauthenticated").inc()
            _throttled.info(("dsn_unauthenticated",), "outbound job %s: no DSN to <%s>: "
                            "the sender did not authenticate (SPF/DKIM)", job.id, sender)
            return False
        if not self._within_rate(session, sender, now):
            metrics.DSNS_WITHHELD.labels("rate_limit").inc()
            _throttled.warning(("dsn_rate", sender), "outbound job %s: no DSN to <%s>: "
                               "over outbound.dsn_per_recipient_per_hour", job.id, sender)
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

    def _within_rate(self, session: Session, recipient: str, now: datetime) -> bool:
        """Charge one DSN to ``recipient`` in the caller's transaction; False (nothing
        charged) when that passes the hourly limit."""
        limit = self.settings.outbound.dsn_per_recipient_per_hour
        if limit <= 0:
            return True
        start, weight = window_at(now.timestamp())
        quota = Quota("dsn_per_recipient_per_hour", f"dsn:{recipient.lower()}", limit, 1)
        return charge_in(session, [quota], start=start, weight=weight) is None

    def stage_return(self, session: Session, job: ClaimedJob, message: bytes,
                     failed: list[RecipientResult], now: datetime) -> bool:
        """A forward that failed for good from an address that kept no copy (keep-copy
        OFF, ``return_to``): the message and a notice go into that inbox, stored as they
        are (SPEC §5: nothing is lost).  False when the job has nowhere to return to."""
        if not job.return_to:
            return False
        notice = forward_failed_notice(
            self.settings, address=job.return_to, message=message,
            failures=[(r.recipient, r.diagnostic) for r in failed], now=now)
        for returned in (message, notice):
            stage_job(session, spool_dir=self.settings.spool_dir, kind=FORWARD_RETURN,
                      mail_from="", recipients=[job.return_to], message=returned, now=now)
        log.info("outbound job %s: forward failed for good; message returned to <%s>",
                 job.id, job.return_to)
        return True
