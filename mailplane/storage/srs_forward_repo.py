"""SQL for the SRS addresses mailplane emitted (``srs_forwards``; SPEC §5, issue 20).

One row per (SRS address, destination): the same sender forwarded through the same
address on the same day gets the same SRS address, so a row is refreshed, not repeated.
Recording is an upsert whose expiry only moves forward, exact from every process and node
on SQLite and PostgreSQL.  Functions take an open session and do not commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import SrsForward

#: The upsert of :func:`record` per dialect, written out: SQLAlchemy cannot cache a
#: compiled ``ON CONFLICT`` construct, and compiling it for every forwarded message was
#: a third of what sender authentication added to the MX's CPU (``make bench``).
_EXPIRES = bindparam("expires_at", type_=SrsForward.__table__.c.expires_at.type)
_RECORD = {
    dialect: text(
        "INSERT INTO srs_forwards (srs_address, destination, expires_at)"
        " VALUES (:srs_address, :destination, :expires_at)"
        " ON CONFLICT (srs_address, destination) DO UPDATE"
        f" SET expires_at = {later}(srs_forwards.expires_at, excluded.expires_at)",
    ).bindparams(_EXPIRES)
    for dialect, later in (("sqlite", "max"), ("postgresql", "greatest"))
}


def record(session: Session, *, srs_address: str, destinations: Iterable[str],
           expires_at: datetime) -> None:
    """Remember that ``srs_address`` was the envelope sender of a forward to each of
    ``destinations`` until ``expires_at`` (lower-cased: addresses compare without case)."""
    rows = [{"srs_address": srs_address.lower(), "destination": d.lower(),
             "expires_at": as_utc(expires_at)} for d in sorted(set(destinations))]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement = _RECORD.get(dialect)
    if statement is None:
        raise NotImplementedError(f"SRS forward upsert is not written for {dialect}")
    session.execute(statement, rows)


def destinations(session: Session, *, srs_address: str, now: datetime) -> set[str]:
    """Where mail sent from ``srs_address`` really went, among forwards not yet expired
    (empty: we never emitted it, or too long ago)."""
    return set(session.scalars(select(SrsForward.destination).where(
        SrsForward.srs_address == srs_address.lower(),
        SrsForward.expires_at > as_utc(now))))


def purge_expired(session: Session, *, now: datetime) -> int:
    result = session.execute(delete(SrsForward).where(SrsForward.expires_at <= as_utc(now)))
    return int(getattr(result, "rowcount", 0) or 0)
