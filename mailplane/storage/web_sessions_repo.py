"""Portal sessions and contract passwords (SPEC §10).  Functions take an open session and
do not commit: the caller owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.storage.models import Address, Contract, WebSession


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session with what a request needs to act for it, and what decides whether it
    still may: the stamps it signed in under and its contract's and address's current
    password hashes and status."""

    id_hash: str
    contract_id: int
    customer_number: str
    address_id: int | None
    address: str | None
    last_seen_at: datetime
    expires_at: datetime
    contract_stamp: str | None = None
    address_stamp: str | None = None
    contract_password_hash: str | None = None
    contract_active: bool = True
    address_password_hash: str | None = None
    address_active: bool = True


def create(session: Session, *, id_hash: str, contract_id: int, address_id: int | None,
           now: datetime, expires_at: datetime, contract_stamp: str | None,
           address_stamp: str | None) -> None:
    session.add(WebSession(id_hash=id_hash, contract_id=contract_id, address_id=address_id,
                           created_at=now, last_seen_at=now, expires_at=expires_at,
                           contract_stamp=contract_stamp, address_stamp=address_stamp))


def get(session: Session, *, id_hash: str) -> SessionRow | None:
    """The session with its contract's and address's current credentials, read in the
    same statement (no cache: a change on any node counts at the next request)."""
    row = session.execute(
        select(WebSession.id_hash, WebSession.contract_id, Contract.customer_number,
               WebSession.address_id, Address.address, WebSession.last_seen_at,
               WebSession.expires_at, WebSession.contract_stamp, WebSession.address_stamp,
               Contract.password_hash, Contract.status, Address.password_hash,
               Address.status)
        .join(Contract, Contract.id == WebSession.contract_id)
        .outerjoin(Address, Address.id == WebSession.address_id)
        .where(WebSession.id_hash == id_hash)
    ).first()
    if row is None:
        return None
    values = row._tuple()
    return SessionRow(values[0], values[1], values[2], values[3], values[4],
                      as_utc(values[5]), as_utc(values[6]), values[7], values[8],
                      values[9], values[10] == "active", values[11],
                      values[12] is None or values[12] == "active")


def restamp(session: Session, *, id_hash: str, old_stamp: str, new_stamp: str) -> None:
    """The session that changed a password it signed in under keeps going under the new
    one (only the stamp that was the old password's changes)."""
    for column in (WebSession.contract_stamp, WebSession.address_stamp):
        session.execute(update(WebSession)
                        .where(WebSession.id_hash == id_hash, column == old_stamp)
                        .values({column: new_stamp}))


def touch(session: Session, *, id_hash: str, now: datetime) -> None:
    session.execute(update(WebSession).where(WebSession.id_hash == id_hash)
                    .values(last_seen_at=now))


def end(session: Session, *, id_hash: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id_hash == id_hash))


def purge_expired(session: Session, *, now: datetime, idle_before: datetime) -> int:
    """Drop sessions past their absolute end or idle since ``idle_before``."""
    result = session.execute(delete(WebSession).where(
        (WebSession.expires_at <= now) | (WebSession.last_seen_at <= idle_before)))
    return int(getattr(result, "rowcount", 0) or 0)


def end_all_for_contract(session: Session, *, contract_id: int, mailbox_users: bool = False,
                         keep: str | None = None) -> None:
    """End the contract's portal sessions: a new or recovered contract password ends every
    contract-level session (but ``keep``, the id hash of the session that changed it);
    with ``mailbox_users`` the mailbox users' sessions too (解約)."""
    statement = delete(WebSession).where(WebSession.contract_id == contract_id)
    if not mailbox_users:
        statement = statement.where(WebSession.address_id.is_(None))
    if keep is not None:
        statement = statement.where(WebSession.id_hash != keep)
    session.execute(statement)


@dataclass(frozen=True, slots=True)
class ContractLogin:
    contract_id: int
    customer_number: str
    password_hash: str | None
    status: str = "active"

    @property
    def active(self) -> bool:
        return self.status == "active"


def contract_login(session: Session, *, customer_number: str) -> ContractLogin | None:
    row = session.execute(select(Contract.id, Contract.customer_number, Contract.password_hash,
                                 Contract.status)
                          .where(Contract.customer_number == customer_number)).first()
    if row is None:
        return None
    contract_id, number, password_hash, status = row._tuple()
    return ContractLogin(contract_id, number, password_hash, status)


def set_contract_password(session: Session, *, contract_id: int, password_hash: str,
                          now: datetime) -> None:
    session.execute(update(Contract).where(Contract.id == contract_id)
                    .values(password_hash=password_hash, password_changed_at=now))


def contract_of_address(session: Session, *, address_id: int) -> int | None:
    return session.scalar(select(Address.contract_id).where(Address.id == address_id))
