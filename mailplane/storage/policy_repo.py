"""The policy revision every settings write bumps, and the log of what each revision
touched (DESIGN "Keeping the SMTP path fast"; docs/performance.md, control plane)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.orm import Session

from mailplane.storage.models import PolicyChange, PolicyRevision

#: Built once: every settings write through the API runs both.
_REVISION = cast(Table, PolicyRevision.__table__)
_BUMP = (update(_REVISION).where(_REVISION.c.id == 1)
         .values(revision=_REVISION.c.revision + 1).returning(_REVISION.c.revision))
_LOG_CHANGE = insert(cast(Table, PolicyChange.__table__))


def bump_revision(
    session: Session,
    *,
    address: str | None = None,
    contract_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Call inside the transaction that changes a setting, so both commit together.

    With ``address`` (or ``contract_id`` for a change to every address of a contract) the
    new revision is logged, so caches reload just that; without, they reload everything.
    The UPDATE takes the row lock, so concurrent writers get consecutive revisions in
    commit order.
    """
    revision = session.execute(_BUMP).scalar_one()
    if address is not None or contract_id is not None:
        session.execute(_LOG_CHANGE, {"revision": revision, "address": address,
                                      "contract_id": contract_id,
                                      "changed_at": now or datetime.now(UTC)})
    return int(revision)


@dataclass(frozen=True, slots=True)
class Changes:
    addresses: frozenset[str]
    contract_ids: frozenset[int]


def changes_between(session: Session, *, after: int, upto: int) -> Changes | None:
    """What revisions ``after+1 … upto`` touched, or None when any of them is not logged
    (the caller then reloads everything)."""
    rows = session.execute(
        select(PolicyChange.address, PolicyChange.contract_id)
        .where(PolicyChange.revision > after, PolicyChange.revision <= upto)
    ).all()
    if len(rows) != upto - after:
        return None
    return Changes(
        addresses=frozenset(address for address, _ in rows if address is not None),
        contract_ids=frozenset(cid for address, cid in rows
                               if address is None and cid is not None),
    )


def purge_changes_before(session: Session, *, cutoff: datetime) -> int:
    """Old log rows: a cache that far behind reloads everything anyway."""
    result = session.execute(delete(PolicyChange).where(PolicyChange.changed_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
