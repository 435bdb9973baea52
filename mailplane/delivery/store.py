"""Persist everything SMTP transactions produced, all or nothing per transaction (DESIGN
step 3), many transactions at a time (group commit).

For each transaction ("plan"): inbox and quarantine copies written in ``tmp/`` (the
quarantine is the address's 迷惑メール folder, :mod:`~mailplane.delivery.quarantine`),
spooled outbound jobs written, spool files renamed into place, and all of it made durable
→ the recipients' addresses re-checked, then quarantine index, outbound job rows and their
claims (an auto-reply's 24 h gate and caps) committed in the same transaction → inbox and
quarantine copies renamed into ``new/`` and those names made durable.  A quarantined
message thus becomes visible to IMAP only once its index row exists.  "Durable" is an
fsync per file and per directory, or one ``syncfs`` per filesystem (``mx.durability``,
:mod:`~mailplane.mailstore.durability`).  Only then may the MX answer 250.  A failure
anywhere removes what that plan wrote (and its rows, if they were already committed) and
is returned as that plan's result, so its MX session answers 451 with nothing
half-stored while the other plans of the batch go on.

:func:`persist_batch` does this for several plans at once: every directory is fsynced once
per batch and every row of the batch commits in one transaction (if that transaction
fails, each plan is committed alone, so one bad plan never fails its neighbours).  No
database write lock is ever held across an fsync: every file is durable before the
transaction starts.  :class:`~mailplane.delivery.writer.DeliveryWriter` feeds it.

**Deletion is immediate on every node** (issue 20): a node's policy snapshot may still
hold an address deleted since its last refresh, so the transaction first reads which of
the plans' recipients still exist (holding them when it adds rows, so a concurrent
deletion waits for it — ``addresses_repo.existing``).  A recipient that is gone is left
out as if its RCPT had been refused: its files (inbox and 迷惑メール copies) are removed
before any is published, the directories its write created are removed again (a deleted
mailbox is never recreated), its jobs are not queued; ``plan.gone`` names it.  A plan
left with nothing fails with :class:`~mailplane.delivery.plan.RecipientsGone`
(``550 5.1.1``).  While the database cannot answer, a plan with no rows of its own (inbox
copies only) trusts the policy snapshot, as it did before the re-check: inbox mail is
still accepted in an outage.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.config.settings import Settings
from mailplane.delivery.plan import DeliveryPlan, RecipientsGone
from mailplane.delivery.quarantine import new_item_id, quarantine_dir, write_item_tmp
from mailplane.mailstore.durability import Syncfs
from mailplane.mailstore.folders import FOLDER_MARKER, QUARANTINE, folder_dir
from mailplane.mailstore.maildir import (
    PendingFile,
    discard,
    fsync_dir,
    fsync_file,
    rename_into,
    write_tmp,
)
from mailplane.mailstore.paths import mailbox_dir
from mailplane.net.throttled_log import ThrottledLog
from mailplane.storage import addresses_repo, outbound_repo, quarantine_repo
from mailplane.storage.models import QuarantineItem

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

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
    #: Recipients whose address no longer exists (read in the transaction).
    gone: frozenset[str] = frozenset()
    committed: bool = False
    error: Exception | None = None

    @property
    def has_rows(self) -> bool:
        return bool(self.items or self.plan.outbound)

    @property
    def checked(self) -> bool:
        """Whether the transaction has anything to do for this plan: rows to add, or
        recipients to re-check."""
        return self.has_rows or bool(self.plan.recipients())


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
    _commit_rows(session_factory, [p for p in _live(progress) if p.checked])
    for p in _live(progress):
        if p.gone:
            _leave_out_gone(settings, p)
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


def _stage(session: Session, progress: list[_Progress]) -> bool:
    """The recipients re-checked first, then claims, then every job row of the batch in
    one INSERT; True when there is anything to commit."""
    has_rows = any(p.has_rows for p in progress)
    present = addresses_repo.existing(
        session, addresses=set().union(*(p.plan.recipients() for p in progress)),
        hold=has_rows)
    rows: list[dict[str, object]] = []
    for p in progress:
        p.gone = frozenset(p.plan.recipients() - present)
        p.job_ids = []
        for job in p.plan.outbound:
            if job.origin in p.gone:
                job.staged = False
                continue
            row = job.claimed_row(session, now=p.now)
            if row is not None:
                rows.append(row)
                p.job_ids.append(job.job_id)
        quarantine_repo.add_items(session, items=[item for item in p.items
                                                  if item.address not in p.gone])
    outbound_repo.add_jobs(session, rows)
    return has_rows


#: After the database failed to answer a re-check, plans with no rows of their own trust
#: the policy snapshot for this long (one wait for a dead database, not one per batch).
RECHECK_PAUSE_SECONDS = 10.0
_recheck_paused_until = 0.0


def _recheck_paused() -> bool:
    return time.monotonic() < _recheck_paused_until


def _pause_recheck(exc: Exception) -> None:
    """The database cannot answer: inbox mail needs only the Maildir and the snapshot (an
    address cannot be deleted while the database is away), so it is still accepted."""
    global _recheck_paused_until
    _recheck_paused_until = time.monotonic() + RECHECK_PAUSE_SECONDS
    _throttled.warning("recheck", "recipients not re-checked (the database did not answer: "
                       "%s); the policy snapshot decides for %.0f s", type(exc).__name__,
                       RECHECK_PAUSE_SECONDS)


def _commit_rows(session_factory: sessionmaker[Session], progress: list[_Progress]) -> None:
    """Every plan's rows in one transaction; if it fails, each plan alone.  A batch with
    no rows only reads (nothing to commit)."""
    if _recheck_paused():
        progress = [p for p in progress if p.has_rows]
    if not progress:
        return
    if len(progress) > 1:
        try:
            with session_factory() as session:
                if _stage(session, progress):
                    session.commit()
        except Exception:  # retried plan by plan below
            pass
        else:
            for p in progress:
                p.committed = True
            return
    for p in progress:
        if not p.has_rows and _recheck_paused():
            continue
        try:
            with session_factory() as session:
                if _stage(session, [p]):
                    session.commit()
            p.committed = True
        except OperationalError as exc:
            if p.has_rows:
                p.error = exc
            else:
                _pause_recheck(exc)
        except Exception as exc:
            p.error = exc


def _leave_out_gone(settings: Settings, p: _Progress) -> None:
    """Remove what ``p`` wrote for recipients whose address is gone, before anything of
    them is published, and the mailbox directories those writes created; the plan keeps
    the rest (or fails with :class:`RecipientsGone` when nothing is left)."""
    gone = p.gone
    metrics.DELETED_RECIPIENTS.inc(len(gone))
    kept_inbox = []
    for write, pending in zip(p.plan.inbox, p.inbox, strict=True):
        if write.address in gone:
            discard([pending])
        else:
            kept_inbox.append(pending)
    p.inbox = kept_inbox
    kept_quarantine, kept_items = [], []
    for item, pending in zip(p.items, p.quarantine, strict=True):
        if item.address in gone:
            discard([pending])  # still in 迷惑メール's tmp/: never seen by IMAP
        else:
            kept_quarantine.append(pending)
            kept_items.append(item)
    p.quarantine, p.items = kept_quarantine, kept_items
    for job in p.plan.outbound:
        if job.origin in gone:
            job.discard()
    p.plan.leave_out(gone)
    p.plan.gone = gone
    for address in gone:
        maildir = mailbox_dir(settings.maildir_root, address)
        _remove_if_empty(folder_dir(maildir, QUARANTINE), ("tmp", "new", "cur"),
                         marker=FOLDER_MARKER)
        _remove_if_empty(maildir, ("tmp", "new", "cur"))
    log.info("delivery %s: not stored for %s: the address was deleted",
             "failed" if p.plan.empty else "goes on", ", ".join(sorted(gone)))
    if p.plan.empty:
        p.error = RecipientsGone(gone)


def _remove_if_empty(directory: Path, subdirectories: tuple[str, ...], *,
                     marker: str = "") -> None:
    """Remove ``directory`` (with the named subdirectories, and a Maildir++ folder's
    ``marker`` file) only where nothing is in them: a concurrent delivery's file, or a
    mailbox created again since, stays."""
    for name in subdirectories:
        try:
            (directory / name).rmdir()
        except OSError:  # not empty, or already gone
            continue
    if marker and not any((directory / name).exists() for name in subdirectories):
        (directory / marker).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty, or already gone
        directory.rmdir()


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
