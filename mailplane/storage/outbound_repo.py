"""Outbound job rows (issue 4): add, claim, and record the outcome of a delivery attempt.

Claiming is the one place concurrency matters: two worker processes (or nodes) must never
send the same job, and a crashed worker's lease must expire so another takes the job.

- PostgreSQL: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING`` — rows
  another claimer holds are skipped, not waited for.
- SQLite (≥ 3.35 for RETURNING): the same UPDATE without the lock clause; SQLite runs one
  writer at a time, so the sub-select and the update are atomic together.

Every outcome update is fenced by ``claimed_by = worker_id``: a worker whose lease expired
and was re-claimed cannot overwrite the new owner's bookkeeping.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Select, Table, and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import OutboundJob

if sqlite3.sqlite_version_info < (3, 35):  # pragma: no cover - checked at import
    raise RuntimeError(f"SQLite {sqlite3.sqlite_version} lacks RETURNING (needs >= 3.35)")


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: str
    kind: str
    mail_from: str
    recipients: tuple[str, ...]
    spool_path: str
    attempts: int
    created_at: datetime
    message: bytes | None = None  # kept in the row instead of a spool file
    #: SPEC §5: whether a failure may be reported to ``mail_from`` (see the model).
    bounce_to_sender: bool = True
    #: The mailbox that keeps a forward that failed for good ("" = none).
    return_to: str = ""


#: Compiled once: the ORM-enabled ``insert(OutboundJob).values(...)`` rebuilt its cache key
#: on every call, a measurable share of MX CPU (docs/performance.md).
_INSERT_JOB = insert(cast(Table, OutboundJob.__table__))


def job_row(
    *,
    job_id: str,
    kind: str,
    mail_from: str,
    recipients: list[str],
    spool_path: str,
    now: datetime,
    message: bytes | None = None,
    bounce_to_sender: bool = True,
    return_to: str = "",
) -> dict[str, object]:
    """A new queued job, as :func:`add_jobs` inserts it: its message in ``spool_path``,
    or (``spool_path=""``) in ``message``."""
    return {
        "id": job_id,
        "kind": kind,
        "mail_from": mail_from,
        "recipients": list(recipients),
        "spool_path": spool_path,
        "message": message,
        "status": "queued",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "claimed_by": None,
        "claimed_until": None,
        "last_error": "",
        "bounce_to_sender": bounce_to_sender,
        "return_to": return_to,
    }


def add_jobs(session: Session, rows: list[dict[str, object]]) -> None:
    """One Core INSERT for many jobs (executemany; no ORM unit of work): the MX runs this
    for every batch of deliveries that forward or reply, so its cost is paid per message."""
    if rows:
        session.execute(_INSERT_JOB, rows)


def due_job_exists(session: Session, *, now: datetime) -> bool:
    """Whether some job is due and not claimed: one indexed read (``ix_outbound_due``), no
    write lock — what an idle worker asks before it tries to claim."""
    now = as_utc(now)
    found = session.scalar(
        select(OutboundJob.id).where(*_due(now)).limit(1))
    return found is not None


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        OutboundJob.status == "queued",
        OutboundJob.next_attempt_at <= now,
        or_(OutboundJob.claimed_until.is_(None), OutboundJob.claimed_until < now),
    )


def peek_due_jobs(session: Session, *, now: datetime, limit: int,
                  offset: int = 0) -> list[tuple[str, tuple[str, ...]]]:
    """``(id, recipients)`` of due, unclaimed jobs, oldest first: a read (no lock) from
    which a worker chooses what its lanes can take before it claims them by id
    (:func:`claim_jobs`)."""
    now = as_utc(now)
    rows = session.execute(
        select(OutboundJob.id, OutboundJob.recipients)
        .where(*_due(now))
        .order_by(OutboundJob.next_attempt_at, OutboundJob.id)
        .limit(limit).offset(offset)
    ).all()
    return [(row.id, tuple(row.recipients)) for row in rows]


def claim_due_jobs(
    session: Session, *, worker_id: str, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedJob]:
    """Claim up to ``limit`` due jobs for ``worker_id`` until ``now + lease``.

    The caller commits right away (a claim is its own short transaction).
    """
    now = as_utc(now)
    due = (
        select(OutboundJob.id)
        .where(*_due(now))
        .order_by(OutboundJob.next_attempt_at)
        .limit(limit)
    )
    return _claim(session, due, worker_id=worker_id, now=now, lease=lease)


def claim_jobs(session: Session, *, job_ids: list[str], worker_id: str, now: datetime,
               lease: timedelta) -> list[ClaimedJob]:
    """Claim those of ``job_ids`` that are still due and unclaimed (another worker may
    have taken some since they were peeked); the caller commits right away."""
    if not job_ids:
        return []
    now = as_utc(now)
    due = select(OutboundJob.id).where(OutboundJob.id.in_(job_ids), *_due(now))
    return _claim(session, due, worker_id=worker_id, now=now, lease=lease)


def _claim(session: Session, due: Select[tuple[str]], *, worker_id: str, now: datetime,
           lease: timedelta) -> list[ClaimedJob]:
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    statement = (
        update(OutboundJob)
        .where(OutboundJob.id.in_(due.scalar_subquery()))
        .values(claimed_by=worker_id, claimed_until=now + lease)
        .returning(
            OutboundJob.id,
            OutboundJob.kind,
            OutboundJob.mail_from,
            OutboundJob.recipients,
            OutboundJob.spool_path,
            OutboundJob.attempts,
            OutboundJob.created_at,
            OutboundJob.message,
            OutboundJob.bounce_to_sender,
            OutboundJob.return_to,
        )
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(statement).all()
    jobs = [
        ClaimedJob(
            id=row.id,
            kind=row.kind,
            mail_from=row.mail_from,
            recipients=tuple(row.recipients),
            spool_path=row.spool_path,
            attempts=row.attempts,
            created_at=as_utc(row.created_at),
            message=row.message,
            bounce_to_sender=bool(row.bounce_to_sender),
            return_to=row.return_to or "",
        )
        for row in rows
    ]
    jobs.sort(key=lambda job: job.created_at)
    return jobs


def _owned(job_id: str, worker_id: str) -> ColumnElement[bool]:
    return and_(OutboundJob.id == job_id, OutboundJob.claimed_by == worker_id)


def mark_sent(session: Session, *, job_id: str, worker_id: str) -> bool:
    result = session.execute(
        update(OutboundJob)
        .where(_owned(job_id, worker_id))
        .values(status="sent", claimed_by=None, claimed_until=None,
                attempts=OutboundJob.attempts + 1, last_error="")
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_retry(
    session: Session,
    *,
    job_id: str,
    worker_id: str,
    recipients: list[str],
    next_attempt_at: datetime,
    error: str,
) -> bool:
    """Keep only the recipients still to try; release the claim until ``next_attempt_at``."""
    result = session.execute(
        update(OutboundJob)
        .where(_owned(job_id, worker_id))
        .values(
            recipients=list(recipients),
            next_attempt_at=as_utc(next_attempt_at),
            attempts=OutboundJob.attempts + 1,
            claimed_by=None,
            claimed_until=None,
            last_error=error[:2000],
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_failed(session: Session, *, job_id: str, worker_id: str, error: str) -> bool:
    result = session.execute(
        update(OutboundJob)
        .where(_owned(job_id, worker_id))
        .values(status="failed", claimed_by=None, claimed_until=None,
                attempts=OutboundJob.attempts + 1, last_error=error[:2000])
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release_claim(session: Session, *, job_id: str, worker_id: str) -> bool:
    """Give an untouched job back (graceful stop before its turn came)."""
    result = session.execute(
        update(OutboundJob)
        .where(_owned(job_id, worker_id))
        .values(claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def extend_claim(session: Session, *, job_id: str, worker_id: str, until: datetime) -> bool:
    """Keep a job that waited for a delivery slot claimed until ``until``; False when the
    claim was lost meanwhile (its lease ran out and another worker took it: then this
    worker must not send it)."""
    result = session.execute(
        update(OutboundJob)
        .where(_owned(job_id, worker_id), OutboundJob.status == "queued")
        .values(claimed_until=as_utc(until))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def claim_holders(session: Session, *, prefix: str) -> set[str]:
    """Worker ids starting with ``prefix`` that hold a claim on a queued job."""
    return set(session.scalars(
        select(OutboundJob.claimed_by).distinct().where(
            OutboundJob.status == "queued", OutboundJob.claimed_by.startswith(prefix)
        )
    ))


def release_claims_of(session: Session, *, worker_id: str) -> int:
    """Hand back every claim of a worker known to be dead (it cannot record an outcome)."""
    result = session.execute(
        update(OutboundJob)
        .where(OutboundJob.status == "queued", OutboundJob.claimed_by == worker_id)
        .values(claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def existing_job_ids(session: Session, *, job_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(job_ids), 500):
        chunk = job_ids[start : start + 500]
        found.update(session.scalars(select(OutboundJob.id).where(OutboundJob.id.in_(chunk))))
    return found


def delete_jobs(session: Session, *, job_ids: list[str]) -> None:
    """Compensate a staged batch whose transaction could not finish (the MX's 451 path,
    like ``quarantine_repo.delete_items``); the caller removes the spool files."""
    if job_ids:
        session.execute(
            delete(OutboundJob).where(OutboundJob.id.in_(job_ids))
            .execution_options(synchronize_session=False)
        )


def delete_finished_before(session: Session, *, cutoff: datetime) -> int:
    """Delete sent/failed job rows created before ``cutoff``; queued jobs are never touched."""
    result = session.execute(
        delete(OutboundJob)
        .where(OutboundJob.status.in_(("sent", "failed")), OutboundJob.created_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
