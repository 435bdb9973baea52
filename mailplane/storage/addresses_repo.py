"""Hosted addresses: creation, lookup, deletion with a re-registration cool-off (SPEC §1)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from mailplane.storage.models import (
    Address,
    AutoReply,
    ForwardDestination,
    QuarantineItem,
    RetiredAddress,
)


@dataclass(frozen=True, slots=True)
class AddressSummary:
    """One row of a contract's settings table (what ``GET …/addresses`` shows)."""

    id: int
    address: str
    pop_account: str
    status: str
    virus_check: bool
    spam_judge: bool
    spam_quarantine: bool
    spam_notify: bool
    forward_keep_copy: bool
    overseas_expires_at: datetime | None
    created_at: datetime
    forward_destinations: tuple[str, ...]
    auto_reply_enabled: bool
    quota_bytes: int = 0

    @classmethod
    def of(cls, row: Address) -> AddressSummary:
        """From a loaded ORM row (the single-address calls)."""
        return cls(
            id=row.id, address=row.address, pop_account=row.pop_account, status=row.status,
            virus_check=row.virus_check, spam_judge=row.spam_judge,
            spam_quarantine=row.spam_quarantine, spam_notify=row.spam_notify,
            forward_keep_copy=row.forward_keep_copy,
            overseas_expires_at=row.overseas_expires_at, created_at=row.created_at,
            forward_destinations=tuple(d.destination for d in row.forward_destinations),
            auto_reply_enabled=bool(row.auto_reply and row.auto_reply.enabled),
            quota_bytes=row.quota_bytes,
        )


#: Table columns, not mapped attributes: plain Core statements skip the ORM's compile and
#: loading layers, which cost more than the queries themselves here.
_A = cast(Table, Address.__table__)
_R = cast(Table, AutoReply.__table__)
_F = cast(Table, ForwardDestination.__table__)
_SUMMARIES = (
    select(_A.c.id, _A.c.address, _A.c.pop_account, _A.c.status, _A.c.virus_check,
           _A.c.spam_judge, _A.c.spam_quarantine, _A.c.spam_notify, _A.c.forward_keep_copy,
           _A.c.overseas_expires_at, _A.c.created_at, _R.c.enabled, _A.c.quota_bytes)
    .select_from(_A.outerjoin(_R, _R.c.address_id == _A.c.id))
    .where(_A.c.contract_id == bindparam("contract_id"))
    .order_by(_A.c.created_at, _A.c.id)
)
_DESTINATIONS = (
    select(_F.c.address_id, _F.c.destination)
    .select_from(_F.join(_A, _A.c.id == _F.c.address_id))
    .where(_A.c.contract_id == bindparam("contract_id"))
    .order_by(_F.c.address_id, _F.c.position)
)


def list_for_contract(session: Session, *, contract_id: int) -> list[AddressSummary]:
    """Every address of a contract, oldest first: two prebuilt column queries, no ORM
    entities — the portal loads this table on every page view, and entity loading with
    ``selectinload`` was 80 % of the request (docs/performance.md, API benchmark)."""
    params = {"contract_id": contract_id}
    rows = session.execute(_SUMMARIES, params).all()
    destinations: dict[int, list[str]] = {}
    for address_id, destination in session.execute(_DESTINATIONS, params):
        destinations.setdefault(address_id, []).append(destination)
    return [
        AddressSummary(
            id=id_, address=address, pop_account=pop_account, status=status,
            virus_check=virus_check, spam_judge=spam_judge, spam_quarantine=spam_quarantine,
            spam_notify=spam_notify, forward_keep_copy=keep_copy,
            overseas_expires_at=overseas_expires_at, created_at=created_at,
            forward_destinations=tuple(destinations.get(id_, ())),
            auto_reply_enabled=bool(auto_reply_enabled), quota_bytes=quota_bytes,
        )
        for (id_, address, pop_account, status, virus_check, spam_judge, spam_quarantine,
             spam_notify, keep_copy, overseas_expires_at, created_at, auto_reply_enabled,
             quota_bytes)
        in rows
    ]


def addresses_of_contracts(session: Session, *, contract_ids: Collection[int]) -> set[str]:
    """The addresses the contracts have now (their mailboxes' names)."""
    if not contract_ids:
        return set()
    return set(session.scalars(select(Address.address)
                               .where(Address.contract_id.in_(sorted(contract_ids)))))


def unavailable_among(
    session: Session, *, addresses: Sequence[str], now: datetime, cooloff: timedelta
) -> set[str]:
    """Which of ``addresses`` are taken, or retired less than ``cooloff`` ago."""
    taken = set(session.scalars(select(Address.address).where(Address.address.in_(addresses))))
    taken.update(
        session.scalars(
            select(RetiredAddress.address).where(
                RetiredAddress.address.in_(addresses), RetiredAddress.deleted_at > now - cooloff
            )
        )
    )
    return taken


def pop_account_exists(session: Session, *, pop_account: str) -> bool:
    return session.scalar(select(Address.id).where(Address.pop_account == pop_account)) is not None


def create_address(
    session: Session,
    *,
    contract_id: int,
    local_part: str,
    subdomain: str,
    base_domain: str,
    pop_account: str,
    password_hash: str,
    virus_check: bool,
    quota_bytes: int,
    now: datetime,
) -> Address:
    domain = f"{subdomain}.{base_domain}"
    row = Address(
        contract_id=contract_id,
        local_part=local_part,
        subdomain=subdomain,
        base_domain=base_domain,
        address=f"{local_part}@{domain}",
        pop_account=pop_account,
        password_hash=password_hash,
        password_changed_at=now,
        status="active",
        virus_check=virus_check,
        spam_judge=False,
        spam_quarantine=False,
        spam_notify=False,
        forward_keep_copy=True,
        quota_bytes=quota_bytes,
        created_at=now,
    )
    row.auto_reply = AutoReply(
        enabled=False, special_senders=[], special_message="", default_message=""
    )
    session.add(row)
    session.execute(delete(RetiredAddress).where(RetiredAddress.address == row.address))
    session.flush()
    return row


def replace_password_hash(session: Session, *, address: Address, expected_hash: str,
                          password_hash: str, now: datetime) -> bool:
    """Store a new password hash only if the stored one is still ``expected_hash`` — the
    one the caller checked the current password against, or showed a reissue for.  False
    if another request changed it first: one conditional UPDATE, atomic on SQLite and
    PostgreSQL alike, so of two concurrent changes exactly one wins."""
    result = session.execute(
        update(_A).where(_A.c.id == address.id, _A.c.password_hash == expected_hash)
        .values(password_hash=password_hash, password_changed_at=now))
    return bool(getattr(result, "rowcount", 0))


def set_status(session: Session, *, address_id: int, status: str) -> bool:
    """``active`` or ``suspended`` (the address's own; its contract may suspend it too).
    One conditional UPDATE: True only for the call that really changed it, so of
    concurrent identical requests exactly one is audited and notified."""
    result = session.execute(
        update(Address).where(Address.id == address_id, Address.status != status)
        .values(status=status).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def find(session: Session, *, address: str) -> Address | None:
    """The address row by full address, whatever its contract (operator tools)."""
    row: Address | None = session.scalar(select(Address).where(
        Address.address == address.strip().lower()))
    return row


def existing(session: Session, *, addresses: Collection[str], hold: bool) -> set[str]:
    """Which of ``addresses`` exist now (the delivery's re-check, issue 20: a node's
    policy snapshot may still hold an address deleted since its last refresh).

    ``hold``: keep them until the transaction ends, so a deletion waits for the rows this
    transaction is about to add for them (quarantine items, jobs) instead of leaving
    them orphaned — PostgreSQL ``FOR KEY SHARE`` (deliveries on other nodes and updates
    of other columns are not blocked); SQLite a no-op UPDATE that takes the database's
    write lock first, as :func:`contracts_repo.lock_for_update` does."""
    wanted = sorted({address.lower() for address in addresses})
    if not wanted:
        return set()
    if hold and session.get_bind().dialect.name == "sqlite":
        rows = session.execute(update(_A).where(_A.c.address.in_(wanted))
                               .values(quota_bytes=_A.c.quota_bytes)
                               .returning(_A.c.address)).scalars()
    else:
        statement = select(_A.c.address).where(_A.c.address.in_(wanted))
        if hold:
            statement = statement.with_for_update(read=True, key_share=True)
        rows = session.execute(statement).scalars()
    return {str(address) for address in rows}


def delete_address(session: Session, *, address: Address, now: datetime) -> bool:
    """Remove the address and its settings; remember it for the cool-off.  False if it is
    already gone (a concurrent delete won): nothing was changed then."""
    deleted = session.execute(delete(_A).where(_A.c.id == address.id))
    if not getattr(deleted, "rowcount", 0):
        return False
    session.expunge(address)
    session.execute(delete(QuarantineItem).where(QuarantineItem.address == address.address))
    session.merge(RetiredAddress(address=address.address, deleted_at=now))
    return True


_IN_CONTRACT = select(Address).where(Address.contract_id == bindparam("contract_id"),
                                     Address.address == bindparam("address"))


_IN_CONTRACT_FOR_UPDATE = _IN_CONTRACT.with_for_update()


def get_in_contract(session: Session, *, contract_id: int, address: str,
                    for_update: bool = False) -> Address | None:
    """The address row if it belongs to the contract (every per-address API call);
    ``for_update`` locks it until the transaction ends (a no-op on SQLite, whose writers
    are serialised by its one write lock)."""
    statement = _IN_CONTRACT_FOR_UPDATE if for_update else _IN_CONTRACT
    row: Address | None = session.scalar(statement, {"contract_id": contract_id,
                                                     "address": address.lower()})
    return row


def id_in_contract(session: Session, *, contract_id: int | None, address: str) -> int | None:
    """The id of ``address`` if it belongs to the contract."""
    found: int | None = session.scalar(select(Address.id).where(
        Address.address == address.lower(), Address.contract_id == contract_id))
    return found


def address_of(session: Session, *, address_id: int) -> str | None:
    found: str | None = session.scalar(select(Address.address).where(Address.id == address_id))
    return found


def first_of_contract(session: Session, *, contract_id: int) -> str | None:
    found: str | None = session.scalar(select(Address.address)
                                       .where(Address.contract_id == contract_id)
                                       .order_by(Address.id))
    return found


def retire_all_of_contract(session: Session, *, contract_id: int,
                           retired_at: datetime) -> list[str]:
    """Delete every address of a contract and its settings (a purged 解約), each kept as
    retired from ``retired_at`` for the re-registration cool-off (SPEC §1, §9a); returns
    the addresses, whose files the caller removes after the commit."""
    addresses = list(session.scalars(select(_A.c.address).where(
        _A.c.contract_id == contract_id)))
    if not addresses:
        return []
    session.execute(delete(QuarantineItem).where(QuarantineItem.address.in_(addresses)))
    session.execute(delete(_A).where(_A.c.contract_id == contract_id))
    for address in addresses:
        session.merge(RetiredAddress(address=address, deleted_at=retired_at))
    return addresses
