"""Bulk-load hosted addresses *with settings* for the benchmarks (issue 6).

SQLAlchemy Core ``insert`` with lists of dicts (executemany) and one transaction per
table chunk: 10,000 fully configured addresses load in a couple of seconds on SQLite,
1,000,000 in about a minute.  Addresses are ``u<n>@<sub>.example.net`` in five-address
contracts ``C<n>``, so the API benchmark has realistic 5-address contracts to list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, update

from mailplane.storage.models import (
    Address,
    AutoReply,
    Contract,
    ForwardDestination,
    ListEntry,
    PolicyRevision,
)

BASE_DOMAIN = "example.net"
ADDRESSES_PER_CONTRACT = 5
FORWARD_TO = "forward-target@elsewhere.example"
_CHUNK = 20_000
_NOW = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class DatasetShape:
    """How much configuration each address carries."""

    addresses: int
    deny_entries: int = 20
    allow_entries: int = 20
    forwarding: bool = True
    auto_reply: bool = True


def address_of(n: int) -> str:
    """The n-th hosted address (0-based); 26 subdomains spread them like real contracts."""
    return f"u{n}@{chr(ord('a') + n % 26)}01.{BASE_DOMAIN}"


def contract_number(n: int) -> str:
    return f"C{n:07d}"


def _chunks(total: int) -> Iterator[range]:
    for start in range(0, total, _CHUNK):
        yield range(start, min(total, start + _CHUNK))


def populate(engine: Engine, shape: DatasetShape) -> None:
    """Insert contracts, addresses and every per-address setting; ids are ``n + 1``."""
    contracts = (shape.addresses + ADDRESSES_PER_CONTRACT - 1) // ADDRESSES_PER_CONTRACT
    with engine.begin() as conn:
        # The migration creates revision row 1; bump it so every node reloads.
        conn.execute(update(PolicyRevision).values(revision=PolicyRevision.revision + 1))
        for part in _chunks(contracts):
            conn.execute(insert(Contract), [
                {"id": c + 1, "customer_number": contract_number(c),
                 "contact_email": f"owner{c}@customer.example", "status": "active",
                 "included_addresses": ADDRESSES_PER_CONTRACT, "extra_slots": 0,
                 "created_at": _NOW}
                for c in part
            ])
    for part in _chunks(shape.addresses):
        with engine.begin() as conn:
            conn.execute(insert(Address), [_address_row(n) for n in part])
            lists = [
                {"address_id": n + 1, "kind": kind, "value": value, "position": i}
                for n in part
                for kind, values in (
                    ("deny_address", [f"blocked{i}@spammer{i}.example"
                                      for i in range(shape.deny_entries)]),
                    ("allow_address", [f"friend{i}@partner{i}.example"
                                       for i in range(shape.allow_entries)]),
                )
                for i, value in enumerate(values)
            ]
            if lists:
                conn.execute(insert(ListEntry), lists)
            if shape.forwarding:
                conn.execute(insert(ForwardDestination), [
                    {"address_id": n + 1, "destination": FORWARD_TO, "position": 0}
                    for n in part
                ])
            if shape.auto_reply:
                conn.execute(insert(AutoReply), [
                    {"address_id": n + 1, "enabled": True, "special_senders": [],
                     "special_message": "", "default_message": "I am away this week."}
                    for n in part
                ])


def _address_row(n: int) -> dict[str, object]:
    address = address_of(n)
    local_part, _, domain = address.partition("@")
    return {
        "id": n + 1,
        "contract_id": n // ADDRESSES_PER_CONTRACT + 1,
        "local_part": local_part,
        "subdomain": domain.split(".", 1)[0],
        "base_domain": BASE_DOMAIN,
        "address": address,
        "pop_account": f"m{n + 1000000}",
        "password_hash": "x",
        "password_changed_at": _NOW,
        "status": "active",
        # Every filter ON (issue 6): virus, spam judge + quarantine + notice, all five
        # deny conditions, keep a copy when forwarding.
        "virus_check": True,
        "spam_judge": True,
        "spam_quarantine": True,
        "spam_notify": True,
        "deny_no_from": True,
        "deny_angle_from": True,
        "deny_blank_from": True,
        "deny_no_subject": True,
        "deny_blank_subject": True,
        "forward_keep_copy": True,
        "overseas_expires_at": None,
        "quota_bytes": 10 * 1024**3,
        "created_at": _NOW,
    }
