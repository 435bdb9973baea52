"""What happened to delivered jobs, recorded (issue 4): per recipient, 2xx → sent; 4xx or no
connection → retry with exponential backoff (60 s doubling, capped at
``outbound.max_backoff_seconds``); 5xx → failed; a recipient still failing temporarily
after ``outbound.lifetime_hours`` → failed (5.4.7); failed recipients → one DSN
(RFC 3464, :mod:`mailplane.outbound.bounces`) queued in the same transaction, and for a
forward whose address kept no copy, the message back in that inbox with a notice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from mailplane.config.sections import OutboundConfig
from mailplane.mailstore.spool import remove_spool_file
from mailplane.outbound.bounces import Bounces
from mailplane.outbound.smtp_transport import RecipientResult
from mailplane.storage import outbound_repo
from mailplane.storage.outbound_repo import ClaimedJob

log = logging.getLogger(__name__)

BASE_BACKOFF_SECONDS = 60


def backoff(
    attempts: int, *, max_seconds: int, base_seconds: int = BASE_BACKOFF_SECONDS
) -> timedelta:
    """Delay before the next try after ``attempts`` earlier tries (60 s, 120 s, 240 s, …)."""
    return timedelta(seconds=min(max_seconds, base_seconds * 2 ** min(attempts, 30)))


@dataclass(frozen=True, slots=True)
class Delivered:
    """A delivered job and what each recipient's attempt gave."""

    job: ClaimedJob
    message: bytes
    results: list[RecipientResult]
    #: When the recipients to retry are due again, if not after the usual backoff: at
    #: once for an attempt a stopping worker cut, at the end of a dead destination's
    #: deferral for one that was not tried (the worker decides, issue 20).
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Split:
    sent: list[RecipientResult]
    retry: list[RecipientResult]
    failed: list[RecipientResult]


def split_results(results: list[RecipientResult], *, expired: bool) -> Split:
    """The results by outcome; past the job's lifetime a retry is a failure (5.4.7)."""
    sent = [r for r in results if r.outcome == "sent"]
    retry = [r for r in results if r.outcome == "retry"]
    failed = [r for r in results if r.outcome == "failed"]
    if retry and expired:
        failed += [RecipientResult(r.recipient, "failed", "5.4.7",
                                   f"delivery time expired; last error: {r.diagnostic}",
                                   r.remote_mta)
                   for r in retry]
        retry = []
    return Split(sent, retry, failed)


def record(delivered: list[Delivered], *, session_factory: sessionmaker[Session],
           bounces: Bounces, worker_id: str, now: datetime, out: OutboundConfig) -> bool:
    """Record the outcomes of delivered jobs in one transaction, each with its DSN; True
    when a DSN was queued.  An outcome whose claim this worker lost writes nothing."""
    recorded: list[tuple[ClaimedJob, Split]] = []
    dsn_staged = False
    with session_factory() as session:
        for outcome in delivered:
            job = outcome.job
            expired = now >= job.created_at + timedelta(hours=out.lifetime_hours)
            split = split_results(outcome.results, expired=expired)
            if split.retry:
                owned = outbound_repo.mark_retry(
                    session, job_id=job.id, worker_id=worker_id,
                    recipients=[r.recipient for r in split.retry],
                    next_attempt_at=outcome.retry_at if outcome.retry_at is not None
                    else now + backoff(job.attempts, max_seconds=out.max_backoff_seconds),
                    error="; ".join(r.diagnostic for r in split.retry),
                )
            elif split.failed and not split.sent:
                owned = outbound_repo.mark_failed(
                    session, job_id=job.id, worker_id=worker_id,
                    error="; ".join(r.diagnostic for r in split.failed),
                )
            else:
                owned = outbound_repo.mark_sent(session, job_id=job.id,
                                                worker_id=worker_id)
            if not owned:  # nothing was written for it: another worker holds it now
                log.warning("outbound job %s: lease lost before the outcome was recorded",
                            job.id)
                continue
            if split.failed and bounces.stage(session, job, outcome.message, split.failed,
                                              now):
                dsn_staged = True
            if split.failed and bounces.stage_return(session, job, outcome.message,
                                                     split.failed, now):
                dsn_staged = True
            recorded.append((job, split))
        session.commit()
    for job, split in recorded:
        for result in split.sent:
            log.info("outbound job %s: sent to <%s> via %s",
                     job.id, result.recipient, result.remote_mta)
        for result in split.failed:
            log.info("outbound job %s: <%s> failed: %s",
                     job.id, result.recipient, result.diagnostic)
        if not split.retry:
            remove_spool_file(job.spool_path)
    return dsn_staged
