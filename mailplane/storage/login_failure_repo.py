"""SQL for the shared failed-login counters (issue 5, reworked in issues 15 and 22).

One row per key: a client IP, an account, or an (account, client IP) pair, each in its
budget (the keys are :mod:`mailplane.auth.login_guard`'s).  Every change starts with one
upsert of its row (``INSERT … ON CONFLICT DO UPDATE``), which takes the row's write lock
(SQLite: the database's) before anything is read, so two nodes counting at the same moment
never lose an increment and a read-decide-write of one row is atomic, on SQLite and
PostgreSQL alike.  Functions take an open session and do not commit: the caller owns the
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
    """A counter after a failed attempt was recorded."""

    failures: int
    locked_until: datetime | None
    #: False when the attempt's wrong password was already among the remembered ones:
    #: nothing was added.
    counted: bool = True


@dataclass(frozen=True, slots=True)
class Reservation:
    """A counter as one more attempt starts (``in_flight`` includes it)."""

    failures: int
    in_flight: int
    locked_until: datetime | None
    wrong_digests: tuple[str, ...] = ()
    last_success_at: datetime | None = None


#: How many wrong passwords a counter remembers (Azure AD smart lockout keeps the last
#: three; two or three old passwords in a household's devices are the common case).
REMEMBERED_WRONG_PASSWORDS = 3


def _digests(value: str | None) -> tuple[str, ...]:
    return tuple(part for part in (value or "").split(",") if part)


def _starts_over(now: datetime, window_seconds: int) -> ColumnElement[bool]:
    """A counter whose first failure is older than the window, or whose lock has run out,
    starts again: old mistakes do not add up forever.  A lock that is still running never
    starts over (a doubled lock outlasts the window it was counted in)."""
    table = cast(Table, LoginFailure.__table__)
    window_start = literal(now - timedelta(seconds=window_seconds), UtcDateTime)
    now_param = literal(now, UtcDateTime)
    not_locked = or_(table.c.locked_until.is_(None), table.c.locked_until <= now_param)
    return and_(not_locked, or_(table.c.first_failure_at < window_start,
                                table.c.locked_until.is_not(None)))


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
    ).returning(table.c.failures, table.c.in_flight, table.c.locked_until,
                table.c.wrong_digests, table.c.last_success_at)
    failures, in_flight, locked_until, digests, success = session.execute(stmt).one()
    return Reservation(int(failures), int(in_flight), _utc(locked_until), _digests(digests),
                       _utc(success))


def release_attempt(session: Session, *, key: str, succeeded_at: datetime | None = None) -> None:
    """The attempt in flight ended without a failure (right password, or refused);
    ``succeeded_at``: with the right password, remembered as the key's last success."""
    table = cast(Table, LoginFailure.__table__)
    values: dict[str, Any] = {
        "in_flight": case((table.c.in_flight > 0, table.c.in_flight - 1), else_=0)}
    if succeeded_at is not None:
        values["last_success_at"] = succeeded_at
    session.execute(update(table).where(table.c.key == key).values(**values))


def _touch(session: Session, *, key: str, now: datetime, window_seconds: int) -> None:
    """Make sure ``key`` has a row, started over if its window or lock has run out; the
    first statement of a change, so it takes the row's (SQLite: the database's) write
    lock before anything is read."""
    table = cast(Table, LoginFailure.__table__)
    starts_over = _starts_over(now, window_seconds)
    now_param = literal(now, UtcDateTime)
    session.execute(_dialect_insert(session)(table).values(
        key=key, failures=0, in_flight=0, first_failure_at=now, locked_until=None,
        lock_count=0,
    ).on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "failures": case((starts_over, 0), else_=table.c.failures),
            "first_failure_at": case((starts_over, now_param),
                                     else_=table.c.first_failure_at),
            "locked_until": case((starts_over, None), else_=table.c.locked_until),
        },
    ))


def count_failure(session: Session, *, key: str, now: datetime, window_seconds: int,
                  max_failures: int, lock_seconds: int, max_lock_seconds: int | None = None,
                  digest: str = "", in_flight: bool = False) -> FailureCount:
    """Count one failure for ``key`` — unless ``digest`` (the wrong password's keyed
    digest) is one this counter already remembers: the same old password again is not
    another guess.  At ``max_failures`` the key is locked for ``lock_seconds``, doubled
    for each earlier lock up to ``max_lock_seconds`` (None: never doubled).
    ``in_flight``: the attempt was reserved (:func:`reserve_attempt`) and ends here."""
    table = cast(Table, LoginFailure.__table__)
    _touch(session, key=key, now=now, window_seconds=window_seconds)
    failures, locked_until, lock_count, stored, flying = session.execute(
        select(table.c.failures, table.c.locked_until, table.c.lock_count,
               table.c.wrong_digests, table.c.in_flight).where(table.c.key == key)
    ).one()
    values: dict[str, Any] = {}
    if in_flight:
        values["in_flight"] = max(int(flying) - 1, 0)
    failures, lock_count = int(failures), int(lock_count)
    locked_until = _utc(locked_until)
    remembered = _digests(stored)
    if digest and digest in remembered:
        if values:
            session.execute(update(table).where(table.c.key == key).values(**values))
        return FailureCount(failures, locked_until, counted=False)
    failures += 1
    values.update(failures=failures, last_failure_at=now)
    if digest:
        values["wrong_digests"] = ",".join(
            (*remembered, digest)[-REMEMBERED_WRONG_PASSWORDS:])
    if failures >= max_failures and not (locked_until is not None and locked_until > now):
        ceiling = lock_seconds if max_lock_seconds is None else max(max_lock_seconds,
                                                                   lock_seconds)
        seconds = min(lock_seconds * 2 ** min(lock_count, 30), ceiling)
        locked_until = now + timedelta(seconds=seconds)
        values.update(locked_until=locked_until, lock_count=lock_count + 1)
    session.execute(update(table).where(table.c.key == key).values(**values))
    return FailureCount(failures, locked_until)


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


def read_counter(session: Session, *, key: str) -> Reservation | None:
    """``key``'s counter as it is (no attempt added), or None when it has no row."""
    table = cast(Table, LoginFailure.__table__)
    row = session.execute(select(table.c.failures, table.c.in_flight, table.c.locked_until,
                                 table.c.wrong_digests, table.c.last_success_at)
                          .where(table.c.key == key)).first()
    if row is None:
        return None
    failures, in_flight, locked_until, digests, success = row._tuple()
    return Reservation(int(failures), int(in_flight), _utc(locked_until), _digests(digests),
                       _utc(success))


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
