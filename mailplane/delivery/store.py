"""Persist everything one SMTP transaction produced, all or nothing (DESIGN step 3).

Order: inbox copies fsynced in ``tmp/`` → quarantine files fsynced (and their dirs) →
quarantine index committed → inbox copies renamed into ``new/`` and dirs fsynced.  Only
then may the MX answer 250.  Any failure removes what this transaction wrote (and the
index rows if they were already committed) and re-raises, so the MX answers 451 with
nothing half-stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailplane.delivery.commit_batcher import CommitBatcher
from mailplane.delivery.fsync_batcher import BATCHER, publish_batched
from mailplane.delivery.maildir import (
    PendingFile,
    discard,
    write_tmp,
)
from mailplane.delivery.quarantine import new_item_id, quarantine_dir, write_item_file
from mailplane.mailbox_paths import mailbox_dir
from mailplane.outbound.queue import PendingJob
from mailplane.settings import Settings
from mailplane.storage import outbound_repo, quarantine_repo
from mailplane.storage.models import QuarantineItem

_MAX_HEADER_TEXT = 998


@dataclass(frozen=True, slots=True)
class InboxWrite:
    address: str
    data: bytes


@dataclass(frozen=True, slots=True)
class QuarantineWrite:
    address: str
    data: bytes
    sender: str
    header_from: str
    subject: str
    reason: str


@dataclass(slots=True)
class DeliveryPlan:
    inbox: list[InboxWrite] = field(default_factory=list)
    quarantine: list[QuarantineWrite] = field(default_factory=list)
    #: Jobs to queue for sending (forwards, auto-replies, SRS returns, remote submission).
    outbound: list[PendingJob] = field(default_factory=list)


def persist(
    settings: Settings,
    session_factory: sessionmaker[Session],
    plan: DeliveryPlan,
    *,
    now: datetime,
    committer: CommitBatcher | None = None,
) -> int:
    """Blocking; run in a thread.  Returns only when every byte is durable.

    The quarantine index, outbound jobs (forwards, auto-replies, SRS returns) and the
    auto-reply ledger claim commit in ONE transaction.  Every file — inbox copies,
    quarantine files, spooled jobs — is written and fsynced *before* that transaction
    starts, so the database write lock is never held across an fsync (with SQLite that
    lock is shared by every concurrent delivery); ``committer`` lets concurrent deliveries
    share that transaction (group commit).  Returns how many jobs were queued.
    """
    pending: list[PendingFile] = []
    quarantine_files: list[Path] = []
    item_ids: list[str] = []
    job_ids: list[str] = []
    committed = False
    try:
        for write in plan.inbox:
            pending.append(write_tmp(mailbox_dir(settings.maildir_root, write.address),
                                     write.data, now=now))
        items: list[QuarantineItem] = []
        for q in plan.quarantine:
            item_id = new_item_id(now)
            path = write_item_file(quarantine_dir(settings, q.address), item_id, q.data)
            quarantine_files.append(path)
            item_ids.append(item_id)
            items.append(
                QuarantineItem(
                    id=item_id,
                    address=q.address,
                    received_at=now,
                    sender=q.sender[:320],
                    header_from=q.header_from[:_MAX_HEADER_TEXT],
                    subject=q.subject[:_MAX_HEADER_TEXT],
                    reason=q.reason,
                    size=len(q.data),
                    path=str(path),
                    notified=False,
                )
            )
        for directory in {p.parent for p in quarantine_files}:
            BATCHER.fsync_dir(directory)
        for job in plan.outbound:
            job.spool(settings.spool_dir)
        if items or plan.outbound:

            def stage_rows(session: Session) -> list[str]:
                staged = [job_id for job in plan.outbound
                          if (job_id := job.stage(session, now=now)) is not None]
                quarantine_repo.add_items(session, items=items)
                return staged

            job_ids = (committer or CommitBatcher(session_factory)).run(stage_rows)
            committed = True
        publish_batched(pending)  # dir fsync grouped across concurrent deliveries
    except BaseException:
        discard(pending)
        for path in quarantine_files:
            path.unlink(missing_ok=True)
        for job in plan.outbound:
            job.discard()
        if committed:
            with session_factory() as session:
                quarantine_repo.delete_items(session, item_ids=item_ids)
                outbound_repo.delete_jobs(session, job_ids=job_ids)
                session.commit()
        raise
    for job in plan.outbound:
        if not job.staged:
            job.discard()  # its claim was refused: no row points at the file
    return len(job_ids)
