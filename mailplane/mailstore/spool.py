"""The outbound spool: message files and job rows of the queue (issue 4: "a job is
committed before the SMTP transaction that caused it is answered").

Staging outbound jobs (issue 4: "a job is committed before the SMTP transaction that
caused it is answered").

:func:`stage_job` writes the message to the spool (tmp file → fsync → rename → directory
fsync) and adds the row to the *caller's* session, so the job commits in the same
transaction as the caller's own writes (the MX delivery, an API change).  Blocking: call it
from a thread.  If the caller's commit fails the spool file is an orphan; the worker's
:func:`sweep_orphan_spool_files` removes orphans older than an hour.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.mailstore.maildir import PendingFile, rename_into, write_new_file
from mailplane.storage import outbound_repo

log = logging.getLogger(__name__)

SPOOL_SUFFIX = ".eml"
TMP_PREFIX = ".tmp-"
ORPHAN_AGE_SECONDS = 3600.0


def new_job_id() -> str:
    return uuid.uuid4().hex


def spool_path(spool_dir: Path, job_id: str) -> Path:
    return spool_dir / f"{job_id}{SPOOL_SUFFIX}"


def write_spool_tmp(spool_dir: Path, job_id: str, message: bytes, *,
                    fsync: bool = True) -> PendingFile:
    """Write (and fsync) one spool file under its temporary name; the caller renames it
    into place (:func:`~mailplane.mailstore.maildir.rename_into`) and fsyncs ``spool_dir``
    (with ``fsync=False``, makes the file durable too: one ``syncfs`` for a batch)."""
    tmp = spool_dir / f"{TMP_PREFIX}{job_id}"
    write_new_file(tmp, message, fsync=fsync,
                   make_parent=lambda: spool_dir.mkdir(parents=True, exist_ok=True))
    return PendingFile(tmp, spool_path(spool_dir, job_id), len(message))


def write_spool_file(spool_dir: Path, job_id: str, message: bytes) -> Path:
    """Durably write one spool file (SPEC §8 non-negotiable: fsynced before 250).

    The directory fsync goes through the process-wide batcher, so concurrent callers
    that each spool a job share one directory fsync instead of paying one each.
    """
    from mailplane.mailstore.fsync_batcher import BATCHER

    pending = write_spool_tmp(spool_dir, job_id, message)
    try:
        rename_into(pending)
    except BaseException:
        pending.tmp_path.unlink(missing_ok=True)
        raise
    BATCHER.fsync_dir(spool_dir)
    return pending.final_path


def stage_job(
    session: Session,
    *,
    spool_dir: Path,
    kind: str,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    now: datetime,
) -> str:
    """Spool ``message`` and add its job row to ``session`` (the caller commits).

    ``mail_from`` ``""`` is the null sender (DSNs, auto-replies): a job with a null sender
    never produces a DSN of its own (RFC 3464 §2: no bounce of a bounce).
    """
    if not recipients:
        raise ValueError("an outbound job needs at least one recipient")
    job_id = new_job_id()
    path = write_spool_file(spool_dir, job_id, message)
    outbound_repo.add_jobs(session, [outbound_repo.job_row(
        job_id=job_id, kind=kind, mail_from=mail_from, recipients=recipients,
        spool_path=str(path), now=as_utc(now))])
    return job_id


#: System mail up to this size may be kept in its job row (:func:`stage_inline_job`).
INLINE_MAX_BYTES = 64 * 1024


def stage_inline_job(
    session: Session,
    *,
    kind: str,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    now: datetime,
) -> str:
    """Queue small system mail (a change notice) with the message in the job row itself:
    the caller's one durable commit covers it, with no spool file to write and fsync
    before that commit — on this disk that was a third of an API settings change
    (docs/performance.md, API).  Mail that passes through (forwards, submissions) is
    spooled by :func:`stage_job`."""
    if not recipients:
        raise ValueError("an outbound job needs at least one recipient")
    if len(message) > INLINE_MAX_BYTES:
        raise ValueError(f"inline job messages are at most {INLINE_MAX_BYTES} bytes")
    job_id = new_job_id()
    outbound_repo.add_jobs(session, [outbound_repo.job_row(
        job_id=job_id, kind=kind, mail_from=mail_from, recipients=recipients,
        spool_path="", now=as_utc(now), message=message,
    )])
    return job_id


def remove_spool_file(path: str) -> None:
    if path:  # "" = the message was kept in the job row
        Path(path).unlink(missing_ok=True)


def sweep_orphan_spool_files(
    session: Session, *, spool_dir: Path, older_than_seconds: float = ORPHAN_AGE_SECONDS
) -> int:
    """Delete spool files whose job row never committed (the caller's commit failed).

    Age is wall-clock (file mtime vs ``time.time()``), not the injected clock: a file staged
    a moment ago must never look old, whatever a test clock says.
    """
    if not spool_dir.is_dir():
        return 0
    cutoff = time.time() - older_than_seconds
    candidates: dict[str, Path] = {}
    for entry in os.scandir(spool_dir):
        if not entry.is_file():
            continue
        try:
            if entry.stat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        name = entry.name
        if name.startswith(TMP_PREFIX):
            candidates[name[len(TMP_PREFIX):] + "/tmp"] = Path(entry.path)
        elif name.endswith(SPOOL_SUFFIX):
            candidates[name[: -len(SPOOL_SUFFIX)]] = Path(entry.path)
    if not candidates:
        return 0
    known = outbound_repo.existing_job_ids(
        session, job_ids=[key for key in candidates if not key.endswith("/tmp")]
    )
    removed = 0
    for key, path in candidates.items():
        if key in known:
            continue
        path.unlink(missing_ok=True)
        removed += 1
        log.info("removed orphan spool file %s", path.name)
    return removed
