"""The one address factory of the tests: a hosted address row (and, when no contract is
given, a contract of its own) written straight to the database, the way the API would
leave it — for tests of the mail services that need addresses but not the API."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mailplane.storage.models import Address, Contract, ListEntry

#: Every address made here gets the next POP account (``m1000001``, ``m1000002``, …).
_numbers = itertools.count(1000001)
CREATED = datetime(2026, 11, 1, tzinfo=UTC)


def add_address(
    session_factory: sessionmaker[Session],
    address: str,
    *,
    contract_id: int | None = None,
    contract_status: str = "active",
    password_hash: str = "x",
    lists: dict[str, list[str]] | None = None,
    **fields: Any,
) -> str:
    """Insert ``address`` (under ``contract_id``, else under a new contract of its own)
    with ``fields`` set on the row and ``lists`` (kind → entries); return its POP account."""
    local_part, _, domain = address.partition("@")
    subdomain, _, base_domain = domain.partition(".")
    number = next(_numbers)
    pop_account = f"m{number}"
    with session_factory() as session, session.begin():
        if contract_id is None:
            contract = Contract(customer_number=f"C{number}", contact_email="contact@example.com",
                                status=contract_status, included_addresses=5, extra_slots=0,
                                created_at=CREATED)
            session.add(contract)
            session.flush()
            contract_id = contract.id
        row = Address(
            contract_id=contract_id, local_part=local_part, subdomain=subdomain,
            base_domain=base_domain, address=address, pop_account=pop_account,
            password_hash=password_hash, password_changed_at=CREATED,
            status=fields.pop("status", "active"),
            quota_bytes=fields.pop("quota_bytes", 1024**3), created_at=CREATED, **fields)
        session.add(row)
        session.flush()
        for kind, values in (lists or {}).items():
            for position, value in enumerate(values):
                session.add(ListEntry(address_id=row.id, kind=kind, value=value,
                                      position=position))
    return pop_account
