"""SQL for the hourly quota counters (``rate_counters``; SPEC §8a submission quotas).

One row per (key, hour).  Adding is a single upsert returning the new count, so counts
from every process and node add up exactly, on SQLite and PostgreSQL; callers make it the
first statement of their transaction (SQLite then holds its write lock before reading).
Functions take an open session and do not commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailplane.storage.models import RateCounter


def add(session: Session, *, key: str, window_start: int, amount: int) -> int:
    """Add ``amount`` to ``key``'s count for the hour starting ``window_start``; the new
    count."""
    table = cast(Table, RateCounter.__table__)
    stmt = _dialect_insert(session)(table).values(
        key=key, window_start=window_start, count=amount,
    ).on_conflict_do_update(
        index_elements=[table.c.key, table.c.window_start],
        set_={"count": table.c.count + amount},
    ).returning(table.c.count)
    return int(session.execute(stmt).scalar_one())


def subtract(session: Session, *, key: str, window_start: int, amount: int) -> None:
    """Take back what :func:`add` added (a refused or failed message)."""
    table = cast(Table, RateCounter.__table__)
    session.execute(update(table).where(table.c.key == key,
                                        table.c.window_start == window_start)
                    .values(count=table.c.count - amount))


def counts(session: Session, *, keys: Sequence[str], window_start: int) -> dict[str, int]:
    """Counts of ``keys`` for one hour (absent keys are 0)."""
    rows = session.execute(select(RateCounter.key, RateCounter.count).where(
        RateCounter.key.in_(list(keys)), RateCounter.window_start == window_start)).all()
    return {str(key): int(count) for key, count in rows}


def purge_before(session: Session, *, window_start: int) -> int:
    """Delete hours that no window reaches any more."""
    result = session.execute(delete(RateCounter).where(RateCounter.window_start < window_start))
    return int(getattr(result, "rowcount", 0) or 0)


def _dialect_insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"rate counter upsert is not written for {name}")
