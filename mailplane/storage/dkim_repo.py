"""DKIM selectors (SPEC §8b): the rows every node reads to know which keys sign.

Functions take an open session and do not commit: the caller owns the transaction.  The
rules of a selector's life (which change is allowed when) are
:mod:`mailplane.signing.selectors`; this module only reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import DkimSelector

GENERATED = "generated"
PUBLISHED = "published"
ACTIVE = "active"
RETIRED = "retired"
#: States whose public key must be in DNS: a published key may sign tomorrow, an active
#: one signs now, and one replaced by a new key still verifies the mail it signed.
IN_DNS = (PUBLISHED, ACTIVE)


@dataclass(frozen=True, slots=True)
class SelectorRow:
    selector: str
    algorithm: str
    public_key: str
    state: str
    created_at: datetime
    activated_at: datetime | None


def _row(row: DkimSelector) -> SelectorRow:
    return SelectorRow(row.selector, row.algorithm, row.public_key, row.state,
                       as_utc(row.created_at),
                       as_utc(row.activated_at) if row.activated_at is not None else None)


def add(session: Session, *, selector: str, algorithm: str, public_key: str,
        now: datetime) -> None:
    session.add(DkimSelector(selector=selector, algorithm=algorithm, public_key=public_key,
                             state=GENERATED, created_at=now))


def get(session: Session, *, selector: str) -> SelectorRow | None:
    row = session.scalar(select(DkimSelector).where(DkimSelector.selector == selector))
    return _row(row) if row is not None else None


def all_selectors(session: Session) -> list[SelectorRow]:
    rows = session.scalars(select(DkimSelector).order_by(DkimSelector.created_at,
                                                         DkimSelector.id))
    return [_row(row) for row in rows]


def in_dns(session: Session) -> list[SelectorRow]:
    """Selectors whose public key ``mailplane dns-records`` prints."""
    rows = session.scalars(select(DkimSelector).where(DkimSelector.state.in_(IN_DNS))
                           .order_by(DkimSelector.created_at, DkimSelector.id))
    return [_row(row) for row in rows]


def active(session: Session) -> list[SelectorRow]:
    """The selectors that sign now: at most one per algorithm (a unique index says so)."""
    rows = session.scalars(select(DkimSelector).where(DkimSelector.state == ACTIVE)
                           .order_by(DkimSelector.algorithm))
    return [_row(row) for row in rows]


def mark_published(session: Session, *, selector: str, now: datetime) -> None:
    session.execute(update(DkimSelector)
                    .where(DkimSelector.selector == selector,
                           DkimSelector.state == GENERATED)
                    .values(state=PUBLISHED, published_at=now))


def activate(session: Session, *, selector: str, algorithm: str, now: datetime) -> None:
    """``selector`` signs from now on; the one it replaces stays in DNS (``published``)
    so the mail it signed still verifies.  The algorithm's rows are locked first, in id
    order (PostgreSQL; SQLite has one writer anyway), so two activations at once run one
    after the other instead of deadlocking on the partial unique index that allows one
    active selector per algorithm; demotion comes before promotion for that index."""
    session.execute(select(DkimSelector.id).where(DkimSelector.algorithm == algorithm)
                    .order_by(DkimSelector.id).with_for_update())
    session.execute(update(DkimSelector)
                    .where(DkimSelector.algorithm == algorithm,
                           DkimSelector.state == ACTIVE,
                           DkimSelector.selector != selector)
                    .values(state=PUBLISHED))
    session.execute(update(DkimSelector)
                    .where(DkimSelector.selector == selector)
                    .values(state=ACTIVE, activated_at=now))


def retire(session: Session, *, selector: str, now: datetime) -> None:
    session.execute(update(DkimSelector)
                    .where(DkimSelector.selector == selector)
                    .values(state=RETIRED, retired_at=now))
