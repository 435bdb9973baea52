"""SQL for the shared failed-login counters (issue 5, reworked in issue 15).

One row per key (``ip:<address>`` or ``account:<name>``).  Every change is a single upsert
or update of that row (``INSERT … ON CONFLICT DO UPDATE … RETURNING``), so two nodes
counting at the same moment never lose an increment, on SQLite and PostgreSQL alike; the
first statement of each transaction writes, so SQLite takes its write lock before anything
is read.  Functions take an open session and do not commit: the caller owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, case, delete, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import LoginFailure, UtcDateTime


@dataclass(frozen=True, slots=True)
class FailureCount:
    """The counter after one more failure was recorded."""

    failures: int
    locked_until: datetime | None


@dataclass(frozen=True, slots=True)
class Reservation:
    """An IP's counter as one more attempt starts (``in_flight`` includes it)."""

    failures: int
    in_flight: int
    locked_until: datetime | None


def _starts_over(now: datetime, window_seconds: int) -> ColumnElement[bool]:
    """A counter whose first failure is older than the window, or whose lock has run out,
    starts again: old mistakes do not add up forever."""
    table = cast(Table, LoginFailure.__table__)
    window_start = literal(now - timedelta(seconds=window_seconds), UtcDateTime)
    return or_(
        table.c.first_failure_at < window_start,
        and_(table.c.locked_until.is_not(None),
             table.c.locked_until <= literal(now, UtcDateTime)),
    )


def _utc(moment: datetime | None) -> datetime | None:
    return as_utc(moment) if moment is not None else None


def reserve_attempt(session: Session, *, key: str, now: datetime,
                    window_seconds: int) -> Reservation:
    """Count one attempt in flight for ``key`` before its password is checked."""
    table = cast(Table, LoginFailure.__table__)
    starts_over = _starts_over(now, window_seconds)
    now_param = literal(now, UtcDateTime)
    stmt = _dialect_insert(session)(table).values(
        key=key, failures=0, in_flight=1, first_failure_at=now, locked_until=None,
        lock_count=0,
    ).on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "in_flight": case((starts_over, 1), else_=table.c.in_flight + 1),
            "failures": case((starts_over, 0), else_=table.c.failures),
            "first_failure_at": case((starts_over, now_param),
                                     else_=table.c.first_failure_at),
            "locked_until": case((starts_over, None), else_=table.c.locked_until),
        },
    ).returning(table.c.failures, table.c.in_flight, table.c.locked_until)
    failures, in_flight, locked_until = session.execute(stmt).one()
    return Reservation(int(failures), int(in_flight), _utc(locked_until))


def release_attempt(session: Session, *, key: str) -> None:
    """The attempt in flight ended without a failure (right password, or refused)."""
    table = cast(Table, LoginFailure.__table__)
    session.execute(update(table).where(table.c.key == key, table.c.in_flight > 0)
                    .values(in_flight=table.c.in_flight - 1))


def confirm_failure(session: Session, *, key: str, now: datetime, max_failures: int,
                    lock_seconds: int, max_lock_seconds: int) -> FailureCount:
    """The attempt in flight failed: count it; at ``max_failures`` lock the key for
    ``lock_seconds`` doubled per earlier lock (capped at ``max_lock_seconds``)."""
    table = cast(Table, LoginFailure.__table__)
    row = session.execute(
        update(table).where(table.c.key == key)
        .values(failures=table.c.failures + 1, last_failure_at=now,
                in_flight=case((table.c.in_flight > 0, table.c.in_flight - 1), else_=0))
        .returning(table.c.failures, table.c.locked_until, table.c.lock_count)
    ).one_or_none()
    if row is None:  # purged while the password was checked: count it afresh
        count = record_failure(session, key=key, now=now, window_seconds=lock_seconds,
                               max_failures=max_failures, lock_seconds=lock_seconds)
        return count
    failures, locked_until, lock_count = int(row[0]), _utc(row[1]), int(row[2])
    if failures < max_failures or (locked_until is not None and locked_until > now):
        return FailureCount(failures, locked_until)
    seconds = min(lock_seconds * 2 ** min(lock_count, 30), max_lock_seconds)
    until = now + timedelta(seconds=seconds)
    session.execute(update(table).where(table.c.key == key)
                    .values(locked_until=until, lock_count=table.c.lock_count + 1))
    return FailureCount(failures, until)


def record_failure(
    session: Session,
    *,
    key: str,
    now: datetime,
    window_seconds: int,
    max_failures: int,
    lock_seconds: int,
) -> FailureCount:
    """Count one failure for ``key``; lock it for ``lock_seconds`` at ``max_failures``."""
    now_param = literal(now, UtcDateTime)
    lock_end = literal(now + timedelta(seconds=lock_seconds), UtcDateTime)
    table = cast(Table, LoginFailure.__table__)
    starts_over = _starts_over(now, window_seconds)
    first_locks = max_failures <= 1
    stmt = _dialect_insert(session)(table).values(
        key=key,
        failures=1,
        in_flight=0,
        first_failure_at=now,
        last_failure_at=now,
        locked_until=now + timedelta(seconds=lock_seconds) if first_locks else None,
        lock_count=1 if first_locks else 0,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "failures": case((starts_over, 1), else_=table.c.failures + 1),
            "first_failure_at": case((starts_over, now_param), else_=table.c.first_failure_at),
            "last_failure_at": now_param,
            "locked_until": case(
                (starts_over, lock_end if first_locks else None),
                (table.c.failures + 1 >= max_failures, lock_end),
                else_=table.c.locked_until,
            ),
        },
    ).returning(table.c.failures, table.c.locked_until)
    failures, locked_until = session.execute(stmt).one()
    return FailureCount(failures=int(failures), locked_until=_utc(locked_until))


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


def purge_stale(session: Session, *, now: datetime, window_seconds: int,
                forget_seconds: int = 0) -> int:
    """Delete counters that can no longer matter: outside the window, not locked, no
    attempt in flight, and (so a growing IP lock is remembered) no failure for
    ``forget_seconds``."""
    window_start = now - timedelta(seconds=window_seconds)
    forget_before = now - timedelta(seconds=max(forget_seconds, window_seconds))
    result = session.execute(
        delete(LoginFailure).where(
            LoginFailure.first_failure_at < window_start,
            or_(LoginFailure.locked_until.is_(None), LoginFailure.locked_until <= now),
            or_(LoginFailure.last_failure_at.is_(None),
                LoginFailure.last_failure_at < forget_before),
            or_(LoginFailure.in_flight == 0, LoginFailure.first_failure_at < forget_before),
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
