"""Persist everything one SMTP transaction produced, all or nothing (DESIGN step 3).

Order: inbox copies fsynced in ``tmp/`` → quarantine files fsynced (and their dirs) →
quarantine index committed → inbox copies renamed into ``new/`` and dirs fsynced.  Only
then may the MX answer 250.  Any failure removes what this transaction wrote (and the
index rows if they were already committed) and re-raises, so the MX answers 451 with
nothing half-stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailplane.delivery.fsync_batcher import publish_batched
from mailplane.delivery.maildir import (
    PendingFile,
    discard,
    fsync_dir,
    write_tmp,
)
from mailplane.delivery.quarantine import new_item_id, quarantine_dir, write_item_file
from mailplane.mailbox_paths import mailbox_dir
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


#: Something to queue for sending, staged in the delivery transaction: it receives the
#: open session and returns the new job id, or None when nothing was queued (e.g. the
#: auto-reply ledger says this sender already had a reply within 24 hours).
OutboundStaging = Callable[[Session], "str | None"]


@dataclass(slots=True)
class DeliveryPlan:
    inbox: list[InboxWrite] = field(default_factory=list)
    quarantine: list[QuarantineWrite] = field(default_factory=list)
    outbound: list[OutboundStaging] = field(default_factory=list)


def persist(
    settings: Settings,
    session_factory: sessionmaker[Session],
    plan: DeliveryPlan,
    *,
    now: datetime,
) -> int:
    """Blocking; run in a thread.  Returns only when every byte is durable.

    The quarantine index, outbound jobs (forwards, auto-replies, SRS returns) and the
    auto-reply ledger claim commit in ONE transaction.  Returns how many jobs were queued.
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
            fsync_dir(directory)
        if items or plan.outbound:
            with session_factory() as session:
                quarantine_repo.add_items(session, items=items)
                for stage in plan.outbound:
                    job_id = stage(session)
                    if job_id is not None:
                        job_ids.append(job_id)
                session.commit()
            committed = True
        publish_batched(pending)  # dir fsync grouped across concurrent deliveries
    except BaseException:
        discard(pending)
        for path in quarantine_files:
            path.unlink(missing_ok=True)
        if committed:
            with session_factory() as session:
                quarantine_repo.delete_items(session, item_ids=item_ids)
                outbound_repo.delete_jobs(session, job_ids=job_ids)
                session.commit()
        raise
    return len(job_ids)
