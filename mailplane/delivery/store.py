"""Persist everything SMTP transactions produced, all or nothing per transaction (DESIGN
step 3), many transactions at a time (group commit).

For each transaction ("plan"): inbox and quarantine copies written in ``tmp/`` (the
quarantine is the address's 迷惑メール folder, :mod:`~mailplane.delivery.quarantine`),
spooled outbound jobs written, spool files renamed into place, and all of it made durable
→ quarantine index, outbound job rows and auto-reply ledger claims committed → inbox and
quarantine copies renamed into ``new/`` and those names made durable.  A quarantined
message thus becomes visible to IMAP only once its index row exists.  "Durable" is an fsync per file
and per directory, or one ``syncfs`` per filesystem (``mx.durability``,
:mod:`~mailplane.mailstore.durability`).  Only then may the MX answer 250.  A failure
anywhere removes what that plan wrote (and its rows, if they were already committed) and
is returned as that plan's result, so its MX session answers 451 with nothing
half-stored while the other plans of the batch go on.

:func:`persist_batch` does this for several plans at once: every directory is fsynced once
per batch and every row of the batch commits in one transaction (if that transaction
fails, each plan is committed alone, so one bad plan never fails its neighbours).  No
database write lock is ever held across an fsync: every file is durable before the
transaction starts.  :class:`~mailplane.delivery.writer.DeliveryWriter` feeds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailplane.config.settings import Settings
from mailplane.delivery.plan import DeliveryPlan
from mailplane.delivery.quarantine import new_item_id, quarantine_dir, write_item_tmp
from mailplane.mailstore.durability import Syncfs
from mailplane.mailstore.maildir import (
    PendingFile,
    discard,
    fsync_dir,
    fsync_file,
    rename_into,
    write_tmp,
)
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage import outbound_repo, quarantine_repo
from mailplane.storage.models import QuarantineItem

log = logging.getLogger(__name__)

_MAX_HEADER_TEXT = 998


#: One plan's outcome: how many outbound jobs it queued, or why it failed.
PersistResult = int | Exception


@dataclass(slots=True)
class _Progress:
    """What one plan has written so far, to finish it or to undo it."""

    plan: DeliveryPlan
    now: datetime
    inbox: list[PendingFile] = field(default_factory=list)
    quarantine: list[PendingFile] = field(default_factory=list)
    items: list[QuarantineItem] = field(default_factory=list)
    spool: list[PendingFile] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    committed: bool = False
    error: Exception | None = None

    @property
    def has_rows(self) -> bool:
        return bool(self.items or self.plan.outbound)


_FilesOf = Callable[[_Progress], Iterable[PendingFile]]
_DirsOf = Callable[[_Progress], Iterable[Path]]


def persist_batch(
    settings: Settings,
    session_factory: sessionmaker[Session],
    plans: Sequence[tuple[DeliveryPlan, datetime]],
    *,
    syncfs: Syncfs | None = None,
) -> list[PersistResult]:
    """Blocking; the results are in the order of ``plans``.  Never raises for one plan's
    failure: that plan's result is the exception and everything it wrote is removed.

    With ``syncfs`` (``mx.durability``) files are written without their own fsync, and
    each of the two durability points — before the commit and after the inbox renames —
    is one ``syncfs`` per filesystem; what becomes durable, and in which order, is the same
    as with fsync: file contents and spool names, then the rows, then the inbox names.
    """
    progress = [_Progress(plan, now) for plan, now in plans]
    for p in progress:
        _write_files(settings, p, fsync=syncfs is None)
    _rename(_live(progress), lambda p: p.spool)
    if syncfs is None:
        _fsync_dirs(_live(progress), lambda p: {f.final_path.parent for f in p.spool})
    else:
        _syncfs(syncfs, _live(progress), _written_files)
    _commit_rows(session_factory, [p for p in _live(progress) if p.has_rows])
    _rename(_live(progress), lambda p: [*p.inbox, *p.quarantine])
    if syncfs is None:
        _fsync_dirs(_live(progress), lambda p: {f.final_path.parent
                                                for f in (*p.inbox, *p.quarantine)})
    else:
        _syncfs(syncfs, _live(progress),
                lambda p: [f.final_path for f in (*p.inbox, *p.quarantine)])
    results: list[PersistResult] = []
    for p in progress:
        if p.error is not None:
            _undo(session_factory, p)
            results.append(p.error)
            continue
        for job in p.plan.outbound:
            if not job.staged:
                job.discard()  # its claim was refused: no row points at the file
        results.append(len(p.job_ids))
    return results


def _written_files(p: _Progress) -> list[Path]:
    """Where each file of ``p`` is after the spool renames (inbox and quarantine copies
    still in tmp/)."""
    return ([f.tmp_path for f in (*p.inbox, *p.quarantine)]
            + [f.final_path for f in p.spool])


def _syncfs(syncfs: Syncfs, progress: list[_Progress],
            files_of: Callable[[_Progress], list[Path]]) -> None:
    """One syncfs per filesystem for every file of ``progress`` (contents and names).
    Files in a directory on a filesystem that appeared after start-up are fsynced one by
    one, with their directory.  A failure fails every plan of the step."""
    files = [path for p in progress for path in files_of(p)]
    if not files:
        return
    try:
        foreign = set(syncfs.sync(path.parent for path in files))
        for path in files:
            if path.parent in foreign:
                fsync_file(path)
        for directory in foreign:
            fsync_dir(directory)
    except Exception as exc:
        for p in progress:
            p.error = p.error or exc


def _live(progress: Iterable[_Progress]) -> list[_Progress]:
    return [p for p in progress if p.error is None]


def _write_files(settings: Settings, p: _Progress, *, fsync: bool) -> None:
    """Every file of one plan, under a name no reader looks at yet."""
    try:
        for write in p.plan.inbox:
            p.inbox.append(write_tmp(mailbox_dir(settings.maildir_root, write.address),
                                     write.data, now=p.now, fsync=fsync))
        for q in p.plan.quarantine:
            pending = write_item_tmp(quarantine_dir(settings, q.address), q.data,
                                     now=p.now, fsync=fsync)
            p.quarantine.append(pending)
            p.items.append(QuarantineItem(
                id=new_item_id(p.now), address=q.address, received_at=p.now,
                sender=q.sender[:320], header_from=q.header_from[:_MAX_HEADER_TEXT],
                subject=q.subject[:_MAX_HEADER_TEXT], reason=q.reason, size=len(q.data),
                path=str(pending.final_path), notified=False,
            ))
        for job in p.plan.outbound:
            p.spool.append(job.spool_tmp(settings.spool_dir, fsync=fsync))
    except Exception as exc:  # returned as this plan's result
        p.error = exc


def _rename(progress: list[_Progress], files: _FilesOf) -> None:
    """Rename each plan's files into place (the caller makes the names durable)."""
    for p in progress:
        try:
            for item in files(p):
                rename_into(item)
        except Exception as exc:
            p.error = exc


def _fsync_dirs(progress: list[_Progress], dirs_of: _DirsOf) -> None:
    """One fsync per directory for the whole batch; a failed fsync fails every plan that
    needed that directory (their renames may not be durable)."""
    needed: dict[Path, list[_Progress]] = {}
    for p in progress:
        for directory in dirs_of(p):
            needed.setdefault(directory, []).append(p)
    for directory, waiting in needed.items():
        try:
            fsync_dir(directory)
        except Exception as exc:
            for p in waiting:
                p.error = p.error or exc


def _stage(session: Session, progress: list[_Progress]) -> None:
    """Claims first, then every job row of the batch in one INSERT."""
    rows: list[dict[str, object]] = []
    for p in progress:
        p.job_ids = []
        for job in p.plan.outbound:
            row = job.claimed_row(session, now=p.now)
            if row is not None:
                rows.append(row)
                p.job_ids.append(job.job_id)
        quarantine_repo.add_items(session, items=p.items)
    outbound_repo.add_jobs(session, rows)


def _commit_rows(session_factory: sessionmaker[Session], progress: list[_Progress]) -> None:
    """Every plan's rows in one transaction; if it fails, each plan alone."""
    if not progress:
        return
    if len(progress) > 1:
        try:
            with session_factory() as session:
                _stage(session, progress)
                session.commit()
        except Exception:  # retried plan by plan below
            pass
        else:
            for p in progress:
                p.committed = True
            return
    for p in progress:
        try:
            with session_factory() as session:
                _stage(session, [p])
                session.commit()
            p.committed = True
        except Exception as exc:
            p.error = exc


def _undo(session_factory: sessionmaker[Session], p: _Progress) -> None:
    """Remove every trace of a failed plan: files, and rows if they were committed."""
    discard(p.inbox)
    discard(p.quarantine)
    for job in p.plan.outbound:
        job.discard()
    if p.committed:
        try:
            with session_factory() as session:
                quarantine_repo.delete_items(session,
                                             item_ids=[item.id for item in p.items])
                outbound_repo.delete_jobs(session, job_ids=p.job_ids)
                for job in p.plan.outbound:
                    job.release_claim(session)
                session.commit()
        except Exception:  # the plan still fails with its own error (451)
            log.exception("could not remove the rows of a failed delivery")
