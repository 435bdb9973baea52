"""All SQL for ``quarantine_items`` (the index of the per-address quarantine store, SPEC §4).

Keyword-only functions on a caller's Session; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from mailplane.storage.models import Address, QuarantineItem


def add_items(session: Session, *, items: Iterable[QuarantineItem]) -> None:
    session.add_all(list(items))


def add_items_once(session: Session, *, items: Iterable[QuarantineItem]) -> None:
    """Insert rows whose id may already be there (two nodes reconciling one folder at
    once: the same message found twice is one row)."""
    rows = [{column.name: getattr(item, column.name)
             for column in QuarantineItem.__table__.columns} for item in items]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement: Executable
    if dialect == "postgresql":
        statement = postgresql.insert(QuarantineItem).on_conflict_do_nothing(
            index_elements=["id"])
    elif dialect == "sqlite":
        statement = sqlite.insert(QuarantineItem).on_conflict_do_nothing(
            index_elements=["id"])
    else:  # pragma: no cover - the two supported databases are above
        statement = insert(QuarantineItem)
    session.execute(statement, rows)


def committed_paths(session: Session, *, paths: Iterable[str]) -> set[str]:
    """Which of ``paths`` an index row points at."""
    wanted = list(paths)
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(session.scalars(select(QuarantineItem.path).where(
            QuarantineItem.path.in_(wanted[start:start + 500]))))
    return found


def move_item(session: Session, *, item_id: str, path: str) -> None:
    """The item's message is now at ``path``."""
    session.execute(update(QuarantineItem).where(QuarantineItem.id == item_id)
                    .values(path=path))


def addresses_with_items(session: Session, *, unnotified_only: bool = False) -> list[str]:
    """Addresses that have quarantine rows (all, or only ones not yet in a digest)."""
    query = select(QuarantineItem.address).distinct().order_by(QuarantineItem.address)
    if unnotified_only:
        query = query.where(QuarantineItem.notified.is_(False))
    return list(session.scalars(query))


def list_for_address(session: Session, *, address: str) -> list[QuarantineItem]:
    """Newest first (the order the portal shows)."""
    return list(
        session.scalars(
            select(QuarantineItem)
            .where(QuarantineItem.address == address)
            .order_by(QuarantineItem.received_at.desc(), QuarantineItem.id.desc())
        )
    )


def get_item(session: Session, *, address: str, item_id: str) -> QuarantineItem | None:
    return session.scalar(
        select(QuarantineItem).where(
            QuarantineItem.id == item_id, QuarantineItem.address == address
        )
    )


def items_of(session: Session, *, address: str, item_ids: Iterable[str]) -> list[QuarantineItem]:
    """The items among ``item_ids`` that belong to ``address`` (others' ids are ignored)."""
    ids = list(item_ids)
    if not ids:
        return []
    return list(session.scalars(select(QuarantineItem).where(
        QuarantineItem.address == address, QuarantineItem.id.in_(ids))))


def delete_items(session: Session, *, item_ids: Iterable[str]) -> int:
    ids = list(item_ids)
    if not ids:
        return 0
    result = session.execute(delete(QuarantineItem).where(QuarantineItem.id.in_(ids)))
    return int(getattr(result, "rowcount", 0) or 0)


def list_received_before(session: Session, *, cutoff: datetime) -> list[QuarantineItem]:
    return list(
        session.scalars(select(QuarantineItem).where(QuarantineItem.received_at < cutoff))
    )


def claim_digest(session: Session, *, address: str) -> bool:
    """Whether this transaction may send ``address``'s digest now.

    On PostgreSQL a transaction-scoped advisory lock per address: of two nodes running
    digests at the same moment, one gets it and the other skips the address (row locks
    with SKIP LOCKED were not enough — two nodes could each lock *part* of one address's
    items and both send a digest).  SQLite serialises writers on its own.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"),
        {"key": f"mailplane-digest:{address}"},
    ))


def list_unnotified(session: Session, *, address: str) -> list[QuarantineItem]:
    """Items quarantined since the last digest, oldest first (after :func:`claim_digest`)."""
    return list(session.scalars(
        select(QuarantineItem)
        .where(QuarantineItem.address == address, QuarantineItem.notified.is_(False))
        .order_by(QuarantineItem.received_at, QuarantineItem.id)
    ))


def mark_notified(session: Session, *, item_ids: Iterable[str]) -> None:
    ids = list(item_ids)
    if ids:
        session.execute(
            update(QuarantineItem).where(QuarantineItem.id.in_(ids)).values(notified=True)
        )


def addresses_with_unnotified_and_notify_on(session: Session) -> list[str]:
    """Addresses whose owner wants digests (spam_notify ON) and has new items."""
    return list(
        session.scalars(
            select(QuarantineItem.address)
            .join(Address, Address.address == QuarantineItem.address)
            .where(QuarantineItem.notified.is_(False), Address.spam_notify.is_(True))
            .distinct()
            .order_by(QuarantineItem.address)
        )
    )
