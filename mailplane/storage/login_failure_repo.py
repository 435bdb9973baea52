"""SQL for the shared failed-login counters (issue 5: brute-force protection on every node).

One row per key (``ip:<address>`` or ``account:<name>``).  A failure is counted with a single
upsert (``INSERT … ON CONFLICT DO UPDATE … RETURNING``) so two nodes counting at the same
moment never lose an increment, on SQLite and on PostgreSQL alike.  Functions take an open
session and do not commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import LoginFailure, UtcDateTime


@dataclass(frozen=True, slots=True)
class FailureCount:
    """The counter after one more failure was recorded."""

    failures: int
    locked_until: datetime | None


def record_failure(
    session: Session,
    *,
    key: str,
    now: datetime,
    window_seconds: int,
    max_failures: int,
    lock_seconds: int,
) -> FailureCount:
    """Count one failure for ``key``; lock it for ``lock_seconds`` at ``max_failures``.

    A counter whose first failure is older than ``window_seconds``, or whose lock has run
    out, starts again from 1: old mistakes do not add up forever.
    """
    now_param = literal(now, UtcDateTime)
    window_start = literal(now - timedelta(seconds=window_seconds), UtcDateTime)
    lock_end = literal(now + timedelta(seconds=lock_seconds), UtcDateTime)
    table = LoginFailure.__table__
    starts_over: ColumnElement[bool] = or_(
        table.c.first_failure_at < window_start,
        and_(table.c.locked_until.is_not(None), table.c.locked_until <= now_param),
    )
    first_locks = max_failures <= 1
    insert_fn: Any = _dialect_insert(session)
    stmt = insert_fn(table).values(
        key=key,
        failures=1,
        first_failure_at=now,
        locked_until=now + timedelta(seconds=lock_seconds) if first_locks else None,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "failures": case((starts_over, 1), else_=table.c.failures + 1),
            "first_failure_at": case((starts_over, now_param), else_=table.c.first_failure_at),
            "locked_until": case(
                (starts_over, lock_end if first_locks else None),
                (table.c.failures + 1 >= max_failures, lock_end),
                else_=table.c.locked_until,
            ),
        },
    ).returning(table.c.failures, table.c.locked_until)
    failures, locked_until = session.execute(stmt).one()
    return FailureCount(
        failures=int(failures),
        locked_until=as_utc(locked_until) if locked_until is not None else None,
    )


def latest_lock(session: Session, *, keys: Sequence[str], now: datetime) -> datetime | None:
    """The latest still-running lock among ``keys``, or None when none is locked."""
    if not keys:
        return None
    found = session.scalars(
        select(LoginFailure.locked_until).where(
            LoginFailure.key.in_(list(keys)),
            LoginFailure.locked_until.is_not(None),
            LoginFailure.locked_until > now,
        )
    ).all()
    locks = [as_utc(moment) for moment in found if moment is not None]
    return max(locks) if locks else None


def failure_count(session: Session, *, key: str) -> int:
    """Current counter for ``key`` (0 when there is no row); for status pages and tests."""
    value = session.scalar(select(LoginFailure.failures).where(LoginFailure.key == key))
    return int(value or 0)


def clear(session: Session, *, key: str) -> None:
    """Forget ``key``'s failures (a successful login clears its account counter)."""
    session.execute(delete(LoginFailure).where(LoginFailure.key == key))


def purge_stale(session: Session, *, now: datetime, window_seconds: int) -> int:
    """Delete counters that can no longer matter: outside the window and not locked."""
    window_start = now - timedelta(seconds=window_seconds)
    result = session.execute(
        delete(LoginFailure).where(
            LoginFailure.first_failure_at < window_start,
            or_(LoginFailure.locked_until.is_(None), LoginFailure.locked_until <= now),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _dialect_insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"login failure upsert is not written for {name}")
