"""SQL for the SRS addresses mailplane emitted (``srs_forwards``; SPEC §5, issue 20).

One row per (SRS address, destination): the same sender forwarded through the same
address on the same day gets the same SRS address, so a row is refreshed, not repeated.
Recording is an upsert whose expiry only moves forward, exact from every process and node
on SQLite and PostgreSQL.  Functions take an open session and do not commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import SrsForward


def record(session: Session, *, srs_address: str, destinations: Iterable[str],
           expires_at: datetime) -> None:
    """Remember that ``srs_address`` was the envelope sender of a forward to each of
    ``destinations`` until ``expires_at`` (lower-cased: addresses compare without case)."""
    rows = [{"srs_address": srs_address.lower(), "destination": d.lower(),
             "expires_at": as_utc(expires_at)} for d in sorted(set(destinations))]
    if not rows:
        return
    table = cast(Table, SrsForward.__table__)
    insert = _dialect_insert(session)(table)
    greatest = func.max if session.get_bind().dialect.name == "sqlite" else func.greatest
    session.execute(insert.on_conflict_do_update(
        index_elements=[table.c.srs_address, table.c.destination],
        set_={"expires_at": greatest(table.c.expires_at, insert.excluded.expires_at)},
    ), rows)


def destinations(session: Session, *, srs_address: str, now: datetime) -> set[str]:
    """Where mail sent from ``srs_address`` really went, among forwards not yet expired
    (empty: we never emitted it, or too long ago)."""
    return set(session.scalars(select(SrsForward.destination).where(
        SrsForward.srs_address == srs_address.lower(),
        SrsForward.expires_at > as_utc(now))))


def purge_expired(session: Session, *, now: datetime) -> int:
    result = session.execute(delete(SrsForward).where(SrsForward.expires_at <= as_utc(now)))
    return int(getattr(result, "rowcount", 0) or 0)


def _dialect_insert(session: Session) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"SRS forward upsert is not written for {name}")
