"""Hosted addresses: creation, lookup, deletion with a re-registration cool-off (SPEC §1)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from mailplane.storage.models import (
    Address,
    AutoReply,
    QuarantineItem,
    RetiredAddress,
)


def list_for_contract(session: Session, *, contract_id: int) -> Sequence[Address]:
    return session.scalars(
        select(Address)
        .where(Address.contract_id == contract_id)
        .options(selectinload(Address.forward_destinations), selectinload(Address.auto_reply))
        .order_by(Address.created_at, Address.id)
    ).all()


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


def set_password_hash(session: Session, *, address: Address, password_hash: str,
                      now: datetime) -> None:
    address.password_hash = password_hash
    address.password_changed_at = now


def delete_address(session: Session, *, address: Address, now: datetime) -> None:
    """Remove the address and its settings; remember it for the cool-off."""
    session.execute(delete(QuarantineItem).where(QuarantineItem.address == address.address))
    session.merge(RetiredAddress(address=address.address, deleted_at=now))
    session.delete(address)
