"""POP credentials as the login check and the Dovecot export read them (SPEC §1: one POP
account and password for POP3 and submission).  ``active`` is the address's own status
and its contract's together (003 Art.20(3): a suspended contract suspends its addresses).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailplane.storage.models import Address, Contract


@dataclass(frozen=True, slots=True)
class Credential:
    address_id: int
    address: str
    pop_account: str
    password_hash: str
    active: bool


_COLUMNS = (Address.id, Address.address, Address.pop_account, Address.password_hash,
            Address.status, Contract.status)


def _credential(row: tuple[int, str, str, str, str, str]) -> Credential:
    address_id, address, pop_account, password_hash, status, contract_status = row
    return Credential(address_id=address_id, address=address, pop_account=pop_account,
                      password_hash=password_hash,
                      active=status == "active" and contract_status == "active")


def find(session: Session, *, username: str) -> Credential | None:
    """By POP account, or by full address when ``username`` holds ``@`` (lower case)."""
    name = username.lower()
    column = Address.address if "@" in name else Address.pop_account
    row = session.execute(select(*_COLUMNS).join(Contract, Contract.id == Address.contract_id)
                          .where(column == name)).first()
    return None if row is None else _credential(row._tuple())


def every(session: Session) -> list[Credential]:
    """All addresses' credentials, by address (the Dovecot passwd-file export)."""
    rows = session.execute(select(*_COLUMNS).join(Contract, Contract.id == Address.contract_id)
                           .order_by(Address.address)).all()
    return [_credential(row._tuple()) for row in rows]
