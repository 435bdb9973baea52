"""Per-address mail settings (SPEC §3-§8): every read and write of them goes through here.

Functions take the already-scoped ``Address`` row and write through the caller's session;
the caller records the change (audit + policy revision) and commits, so a setting and its
revision bump land in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from mailplane.storage.models import Address, AutoReply, ForwardDestination, ListEntry

DENY_ADDRESS = "deny_address"
DENY_SUBJECT = "deny_subject"
ALLOW_ADDRESS = "allow_address"
LIST_KINDS = (DENY_ADDRESS, DENY_SUBJECT, ALLOW_ADDRESS)


def set_virus_check(session: Session, *, address: Address, enabled: bool) -> None:
    address.virus_check = enabled


def set_spam(
    session: Session, *, address: Address, judge: bool, quarantine: bool, notify: bool
) -> None:
    address.spam_judge = judge
    address.spam_quarantine = quarantine
    address.spam_notify = notify


def list_values(session: Session, *, address_id: int, kind: str) -> list[str]:
    """One list's entries in the order they were saved."""
    return list(
        session.scalars(
            select(ListEntry.value)
            .where(ListEntry.address_id == address_id, ListEntry.kind == kind)
            .order_by(ListEntry.position, ListEntry.id)
        )
    )


def replace_list(session: Session, *, address_id: int, kind: str, values: Sequence[str]) -> None:
    """Lists are replaced whole on save (SPEC §4)."""
    if kind not in LIST_KINDS:
        raise ValueError(f"unknown list kind {kind!r}")
    session.execute(
        delete(ListEntry).where(ListEntry.address_id == address_id, ListEntry.kind == kind)
    )
    session.add_all(
        ListEntry(address_id=address_id, kind=kind, value=value, position=position)
        for position, value in enumerate(values)
    )
    session.flush()


def set_deny_conditions(
    session: Session,
    *,
    address: Address,
    no_from: bool,
    angle_from: bool,
    blank_from: bool,
    no_subject: bool,
    blank_subject: bool,
) -> None:
    address.deny_no_from = no_from
    address.deny_angle_from = angle_from
    address.deny_blank_from = blank_from
    address.deny_no_subject = no_subject
    address.deny_blank_subject = blank_subject


def forward_destinations(session: Session, *, address_id: int) -> list[str]:
    return list(
        session.scalars(
            select(ForwardDestination.destination)
            .where(ForwardDestination.address_id == address_id)
            .order_by(ForwardDestination.position, ForwardDestination.id)
        )
    )


#: Built once (a settings PUT runs all three; building them cost as much as running them).
#: On the tables, not the mapped classes: Core statements skip the ORM's bulk paths.
_FORWARDS = cast(Table, ForwardDestination.__table__)
_ADDRESSES = cast(Table, Address.__table__)
_DELETE_FORWARDS = delete(_FORWARDS).where(_FORWARDS.c.address_id == bindparam("address_id"))
_INSERT_FORWARD = insert(_FORWARDS)
_SET_KEEP_COPY = (update(_ADDRESSES).where(_ADDRESSES.c.id == bindparam("address_id"))
                  .values(forward_keep_copy=bindparam("keep_copy")))


def replace_forwarding(
    session: Session, *, address: Address, destinations: Sequence[str], keep_copy: bool
) -> None:
    """Delete then insert, in that order (the unique constraint on (address, destination)
    would trip otherwise), as Core statements: no ORM unit of work for a settings PUT
    (docs/performance.md, API).  ``address`` is expired for what changed, so a later read
    through it sees the stored values."""
    session.execute(_DELETE_FORWARDS, {"address_id": address.id})
    if destinations:
        session.execute(_INSERT_FORWARD, [
            {"address_id": address.id, "destination": destination, "position": position}
            for position, destination in enumerate(destinations)
        ])
    session.execute(_SET_KEEP_COPY, {"address_id": address.id, "keep_copy": keep_copy})
    session.expire(address, ["forward_destinations", "forward_keep_copy"])


def auto_reply(session: Session, *, address_id: int) -> AutoReply | None:
    return session.get(AutoReply, address_id)


def set_auto_reply(
    session: Session,
    *,
    address_id: int,
    enabled: bool,
    special_senders: Sequence[str],
    special_message: str,
    default_message: str,
) -> AutoReply:
    row = session.get(AutoReply, address_id)
    if row is None:
        row = AutoReply(address_id=address_id)
        session.add(row)
    row.enabled = enabled
    row.special_senders = list(special_senders)
    row.special_message = special_message
    row.default_message = default_message
    session.flush()
    return row


def set_overseas_expiry(
    session: Session, *, address: Address, expires_at: datetime | None
) -> None:
    """``None`` = OFF; otherwise ON until ``expires_at`` (UTC), then OFF by itself."""
    address.overseas_expires_at = expires_at


def set_quota(session: Session, *, address: Address, quota_bytes: int) -> None:
    address.quota_bytes = quota_bytes
