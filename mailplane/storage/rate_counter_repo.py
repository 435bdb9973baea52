"""SQL for the shared rate counters (``rate_counters``): the submission quotas (SPEC §8a,
hourly) and the auto-reply caps (SPEC §6, per minute and per day).

One row per (key, window).  Adding is a single upsert returning the new count, so counts
from every process and node add up exactly, on SQLite and PostgreSQL; callers make it the
first statement of their transaction (SQLite then holds its write lock before reading).
A limit reads the sliding estimate ``current + previous × (1 − elapsed share of the
current window)`` (:func:`window_of`, :func:`charge`).  Functions take an open session
and do not commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, delete, select, text, update
from sqlalchemy.orm import Session

from mailplane.storage.models import RateCounter


def window_of(now: float, seconds: int) -> tuple[int, float]:
    """The start (epoch seconds) of the window of ``seconds`` holding ``now``, and the
    weight the previous window's count still has in the sliding estimate."""
    start = int(now // seconds) * seconds
    return start, 1.0 - (now - start) / seconds


#: The upsert of :func:`add`, written out: SQLAlchemy cannot cache a compiled
#: ``ON CONFLICT`` construct (its cache key is None), and compiling it again for every
#: message was a tenth of the MX's CPU with forwarding on (``make bench``).  The same text
#: on SQLite (3.35+) and PostgreSQL.
_ADD = text(
    "INSERT INTO rate_counters (key, window_start, count, window_seconds)"
    " VALUES (:key, :window_start, :amount, :window_seconds)"
    " ON CONFLICT (key, window_start) DO UPDATE"
    " SET count = rate_counters.count + excluded.count"
    " RETURNING count")


def add(session: Session, *, key: str, window_start: int, amount: int,
        window_seconds: int = 3600) -> int:
    """Add ``amount`` to ``key``'s count for the window starting ``window_start``; the
    new count."""
    return int(session.execute(_ADD, {
        "key": key, "window_start": window_start, "amount": amount,
        "window_seconds": window_seconds}).scalar_one())


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


def charge(session: Session, *, key: str, seconds: int, now: float, amount: int) -> int:
    """Add ``amount`` to ``key``'s current window of ``seconds``; the sliding estimate
    with it (the caller compares it with its limit and :func:`subtract` s when over)."""
    start, weight = window_of(now, seconds)
    current = add(session, key=key, window_start=start, amount=amount, window_seconds=seconds)
    previous = counts(session, keys=[key], window_start=start - seconds).get(key, 0)
    return current + int(previous * weight)


def purge_expired(session: Session, *, now: float) -> int:
    """Delete the windows no estimate reads any more: each row is kept for two of its own
    windows (the current and the previous one)."""
    result = session.execute(delete(RateCounter).where(
        RateCounter.window_start + 2 * RateCounter.window_seconds <= int(now)))
    return int(getattr(result, "rowcount", 0) or 0)
