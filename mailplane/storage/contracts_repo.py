"""Contracts and their address counts (SPEC §1: included addresses vs paid slots)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from mailplane.storage.models import Address, Contract


def create_contract(
    session: Session,
    *,
    customer_number: str,
    contact_email: str,
    included_addresses: int,
    now: datetime,
) -> Contract:
    row = Contract(
        customer_number=customer_number,
        contact_email=contact_email,
        included_addresses=included_addresses,
        extra_slots=0,
        status="active",
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


#: Built once: every API call on a contract runs it, and building the statement (and its
#: cache key) each time cost as much as running it (docs/performance.md, API benchmark).
_BY_NUMBER = select(Contract).where(Contract.customer_number == bindparam("customer_number"))


def get_by_number(session: Session, *, customer_number: str) -> Contract | None:
    return session.scalar(_BY_NUMBER, {"customer_number": customer_number})


@dataclass(frozen=True, slots=True)
class ContractSlots:
    """What the address table needs of its contract (read without an ORM entity)."""

    id: int
    customer_number: str
    included_addresses: int
    extra_slots: int
    status: str = "active"
    termination_effective_at: datetime | None = None
    terminated_at: datetime | None = None


_C = cast(Table, Contract.__table__)
_SLOTS_BY_NUMBER = select(_C.c.id, _C.c.customer_number, _C.c.included_addresses,
                          _C.c.extra_slots, _C.c.status, _C.c.termination_effective_at,
                          _C.c.terminated_at
                          ).where(_C.c.customer_number == bindparam("number"))


def slots_by_number(session: Session, *, customer_number: str) -> ContractSlots | None:
    row = session.execute(_SLOTS_BY_NUMBER, {"number": customer_number}).first()
    return None if row is None else ContractSlots(*row)


def get_by_id(session: Session, *, contract_id: int) -> Contract | None:
    return session.get(Contract, contract_id)


def count_addresses(session: Session, *, contract_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(Address).where(Address.contract_id == contract_id)
    ) or 0


def lock_for_update(session: Session, *, contract_id: int) -> Contract | None:
    """Serialise slot decisions per contract: from here to the commit, no other
    transaction can count the contract's addresses and add one.  Returns the contract as
    stored now (not a copy the session read earlier).

    PostgreSQL: a row lock (``FOR UPDATE``).  SQLite: the driver starts a transaction only
    at the first write, so a count read before it sees no later commits; a no-op UPDATE
    of the row takes the database's write lock first (waiting ``busy_timeout`` for another
    writer), and everything read after it is current until the commit (issue 15: 8
    parallel creates took 8 slots of 1).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(_C).where(_C.c.id == contract_id)
                        .values(extra_slots=_C.c.extra_slots))
        statement = select(Contract).where(Contract.id == contract_id)
    else:
        statement = select(Contract).where(Contract.id == contract_id).with_for_update()
    return session.scalar(statement.execution_options(populate_existing=True))


def release_paid_slot(session: Session, *, contract_id: int) -> bool:
    """One paid slot fewer (never below zero), in one statement: concurrent deletions
    each give up their own slot."""
    result = session.execute(
        update(Contract).where(Contract.id == contract_id, Contract.extra_slots > 0)
        .values(extra_slots=Contract.extra_slots - 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- 解約 (SPEC §9a; 003 Art.18-20) -------------------------------------------------------


def request_termination(session: Session, *, contract_id: int, effective_at: datetime,
                        now: datetime) -> bool:
    """Record a customer's 解約 request; False if the contract is no longer active."""
    result = session.execute(
        update(_C).where(_C.c.id == contract_id, _C.c.status == "active")
        .values(termination_effective_at=effective_at, termination_requested_at=now))
    return bool(getattr(result, "rowcount", 0))


def cancel_termination(session: Session, *, contract_id: int) -> bool:
    """Withdraw an open 解約 request; False when there was none (or it took effect)."""
    result = session.execute(
        update(_C).where(_C.c.id == contract_id, _C.c.status != "terminated",
                         _C.c.termination_effective_at.is_not(None))
        .values(termination_effective_at=None, termination_requested_at=None))
    return bool(getattr(result, "rowcount", 0))


def set_terminated(session: Session, *, contract_id: int, now: datetime) -> bool:
    """End the contract.  One conditional UPDATE: True only for the one call that ended
    it, so concurrent requests and the periodic job audit and notify it once."""
    result = session.execute(
        update(_C).where(_C.c.id == contract_id, _C.c.status != "terminated")
        .values(status="terminated", terminated_at=now))
    return bool(getattr(result, "rowcount", 0))


def set_restored(session: Session, *, contract_id: int) -> bool:
    """Bring a terminated contract back (operator only, before its data is purged)."""
    result = session.execute(
        update(_C).where(_C.c.id == contract_id, _C.c.status == "terminated",
                         _C.c.purged_at.is_(None))
        .values(status="active", terminated_at=None, termination_effective_at=None,
                termination_requested_at=None))
    return bool(getattr(result, "rowcount", 0))


def due_terminations(session: Session, *, now: datetime) -> list[int]:
    """Contracts whose requested 解約 has taken effect."""
    return list(session.scalars(select(_C.c.id).where(
        _C.c.status != "terminated", _C.c.termination_effective_at.is_not(None),
        _C.c.termination_effective_at <= now)))


def purgeable(session: Session, *, terminated_before: datetime) -> list[int]:
    return list(session.scalars(select(_C.c.id).where(
        _C.c.status == "terminated", _C.c.purged_at.is_(None),
        _C.c.terminated_at <= terminated_before)))


def mark_purged(session: Session, *, contract_id: int, now: datetime) -> None:
    """The contract row stays (its billing record and audit log refer to it); what would
    let anyone act for it goes."""
    session.execute(update(_C).where(_C.c.id == contract_id)
                    .values(purged_at=now, password_hash=None, extra_slots=0))
