"""The auto-reply ledger: at most one reply per (address, sender) per 24 hours (SPEC §6,
L4529), durable across restarts and shared by every node.

:func:`claim_reply` is ONE conditional upsert::

    INSERT INTO auto_reply_ledger (address, sender, replied_at) VALUES (…)
    ON CONFLICT (address, sender) DO UPDATE SET replied_at = excluded.replied_at
    WHERE auto_reply_ledger.replied_at <= :now - :window
    RETURNING address

A row comes back only if this call inserted or refreshed it, so of two concurrent claims
(two MX processes, two nodes) exactly one wins: PostgreSQL re-evaluates the WHERE against
the winner's committed row; SQLite serialises writers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import AutoReplyLedger


def claim_reply(
    session: Session,
    *,
    address: str,
    sender: str,
    now: datetime,
    window: timedelta,
) -> bool:
    """True if the caller may reply now (and the ledger says so once the caller commits)."""
    now = as_utc(now)
    values = {"address": address.lower(), "sender": sender.lower(), "replied_at": now}
    ledger = AutoReplyLedger
    refresh_when = ledger.replied_at <= now - window
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(ledger).values(**values)
        statement = pg.on_conflict_do_update(
            index_elements=[ledger.address, ledger.sender],
            set_={"replied_at": pg.excluded.replied_at},
            where=refresh_when,
        ).returning(ledger.address)
    else:
        lite = sqlite.insert(ledger).values(**values)
        statement = lite.on_conflict_do_update(
            index_elements=[ledger.address, ledger.sender],
            set_={"replied_at": lite.excluded.replied_at},
            where=refresh_when,
        ).returning(ledger.address)
    return session.execute(statement).first() is not None


def last_reply_at(session: Session, *, address: str, sender: str) -> datetime | None:
    """When the ledger last recorded a reply from ``address`` to ``sender`` (None: never).

    Read after a refused :func:`claim_reply`, so a process that lost a claim to another
    process can remember the winner's time instead of trying again on every message.
    """
    ledger = AutoReplyLedger
    at = session.execute(
        select(ledger.replied_at).where(ledger.address == address.lower(),
                                        ledger.sender == sender.lower())
    ).scalar_one_or_none()
    return None if at is None else as_utc(at)


def release_claim(session: Session, *, address: str, sender: str, claimed_at: datetime,
                  previous: datetime | None) -> None:
    """Undo a committed :func:`claim_reply` whose delivery failed: the row goes back to
    ``previous`` (or away) — only if it still holds this claim's time, so a newer claim by
    another delivery is never lost."""
    ledger = AutoReplyLedger
    mine = (ledger.address == address.lower(), ledger.sender == sender.lower(),
            ledger.replied_at == as_utc(claimed_at))
    if previous is None:
        session.execute(delete(ledger).where(*mine))
    else:
        session.execute(update(ledger).where(*mine).values(replied_at=as_utc(previous)))
