"""Retention purge (SPEC §4: quarantine kept 7 days, L4101; SPEC §8: inbox 4 weeks, L4454).

``purge`` runs once (``mailplane purge`` and the periodic task both call it).  Inbox age is
the delivery time in the Maildir file name (the writer takes it from the injected clock),
falling back to the file's mtime for names another program wrote.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.lifecycle import run_lifecycle
from mailplane.delivery.quarantine import purge_expired
from mailplane.mailstore.maildir import delivered_at
from mailplane.storage import account_codes_repo, idempotency_repo, outbound_repo, policy_repo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    quarantine_deleted: int
    inbox_deleted: int
    outbound_rows_deleted: int = 0
    policy_changes_deleted: int = 0
    idempotency_records_deleted: int = 0
    contracts_terminated: int = 0
    contracts_purged: int = 0
    account_codes_deleted: int = 0


def _inbox_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [
        path
        for sub in ("new", "cur")
        for path in root.glob(f"*/*/{sub}/*")
        if path.is_file()
    ]


def _age_reference(path: Path) -> datetime | None:
    moment = delivered_at(path.name)
    if moment is not None:
        return moment
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return None


def purge_inbox(settings: Settings, clock: Clock) -> int:
    cutoff = clock.now() - timedelta(days=settings.retention.inbox_days)
    deleted = 0
    for path in _inbox_files(settings.maildir_root):
        moment = _age_reference(path)
        if moment is not None and moment < cutoff:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue  # a POP3 client deleted it first
            deleted += 1
    return deleted


def purge_quarantine(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> int:
    cutoff = clock.now() - timedelta(days=settings.retention.quarantine_days)
    return purge_expired(settings, session_factory, cutoff=cutoff)


def purge_outbound_history(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> int:
    """Rows of sent or failed outbound jobs (their spool files are already gone) are kept
    for ``retention.outbound_history_days`` for support questions, then deleted."""
    cutoff = clock.now() - timedelta(days=settings.retention.outbound_history_days)
    with session_factory() as session:
        deleted = outbound_repo.delete_finished_before(session, cutoff=cutoff)
        session.commit()
    return deleted


#: The policy change log only has to cover the gap between two refreshes of any cache; a
#: cache further behind than this reloads everything (``policy.refresh_snapshot``).
POLICY_LOG_KEEP = timedelta(days=1)


def purge_policy_changes(session_factory: sessionmaker[Session], clock: Clock) -> int:
    with session_factory() as session:
        deleted = policy_repo.purge_changes_before(session, cutoff=clock.now() - POLICY_LOG_KEEP)
        session.commit()
    return deleted


def purge_idempotency_records(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> int:
    """Stored ``Idempotency-Key`` replays hold an initial password (sealed): they are
    deleted once they can no longer be replayed (``api.idempotency_hours``; issue 14)."""
    cutoff = clock.now() - timedelta(hours=settings.api.idempotency_hours)
    with session_factory() as session:
        deleted = idempotency_repo.purge_created_before(session, cutoff=cutoff)
        session.commit()
    return deleted


#: Expired account codes are kept this long for support questions ("the code did not
#: work"), then deleted.
ACCOUNT_CODES_KEEP = timedelta(days=1)


def purge_account_codes(session_factory: sessionmaker[Session], clock: Clock) -> int:
    with session_factory() as session:
        deleted = account_codes_repo.purge_before(session,
                                                  cutoff=clock.now() - ACCOUNT_CODES_KEEP)
        session.commit()
    return deleted


def purge(settings: Settings, session_factory: sessionmaker[Session], clock: Clock) -> PurgeResult:
    """Delete expired quarantine items, inbox mail and outbound history once, and run the
    contract lifecycle (due 解約, purges of terminated contracts; blocking)."""
    lifecycle = run_lifecycle(settings, session_factory, clock)
    result = PurgeResult(
        quarantine_deleted=purge_quarantine(settings, session_factory, clock),
        inbox_deleted=purge_inbox(settings, clock),
        outbound_rows_deleted=purge_outbound_history(settings, session_factory, clock),
        policy_changes_deleted=purge_policy_changes(session_factory, clock),
        idempotency_records_deleted=purge_idempotency_records(settings, session_factory,
                                                              clock),
        contracts_terminated=lifecycle.terminated,
        contracts_purged=lifecycle.purged,
        account_codes_deleted=purge_account_codes(session_factory, clock),
    )
    log.info("purge: %d quarantined and %d inbox messages deleted",
             result.quarantine_deleted, result.inbox_deleted)
    return result
