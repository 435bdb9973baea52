"""Loading the policy snapshot from the database (DESIGN "Keeping the SMTP path fast").

A whole snapshot is five column queries whatever the number of addresses; when the
revision moves, :func:`refresh_snapshot` reloads only the addresses the policy change log
names and patches a copy.  Blocking: callers run it in a thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, or_, select, true
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.policy.model import (
    AddressPolicy,
    AutoReplyPolicy,
    DenyConditions,
    PolicySnapshot,
    effective_status,
)
from mailplane.storage import policy_repo
from mailplane.storage.models import (
    Address,
    AutoReply,
    Contract,
    ForwardDestination,
    ListEntry,
    PolicyRevision,
)


def read_revision(session: Session) -> int:
    return session.scalar(select(PolicyRevision.revision).where(PolicyRevision.id == 1)) or 0


_NO_CONDITIONS = DenyConditions()
_NO_AUTO_REPLY = AutoReplyPolicy()

_ADDRESS_COLUMNS = (
    Address.id, Address.address, Address.contract_id, Address.pop_account, Address.status,
    Address.virus_check, Address.spam_judge, Address.spam_quarantine, Address.spam_notify,
    Address.deny_no_from, Address.deny_angle_from, Address.deny_blank_from,
    Address.deny_no_subject, Address.deny_blank_subject, Address.forward_keep_copy,
    Address.overseas_expires_at, Address.quota_bytes, Contract.status,
)


#: Above this many changed addresses/contracts since the last refresh, reload everything.
MAX_PATCH = 5_000


def load_snapshot(session: Session, base_domains: tuple[str, ...]) -> PolicySnapshot:
    """Build a whole snapshot with five column queries (not one per address, and no ORM
    entities: loading entities was most of the build time at a million addresses,
    docs/performance.md), whatever the size."""
    revision = read_revision(session)
    by_address = _load_policies(session, session.execute(select(*_ADDRESS_COLUMNS)
                                                         .join(Contract)).all(), ids=None)
    return PolicySnapshot(
        revision=revision,
        by_address=by_address,
        by_pop_account={p.pop_account: p for p in by_address.values()},
        hosted_domains=frozenset(a.rpartition("@")[2] for a in by_address),
        base_domains=base_domains,
    )


def refresh_snapshot(session: Session, current: PolicySnapshot) -> PolicySnapshot:
    """``current`` brought up to the database's revision: only the addresses the policy
    change log names are reloaded and patched into a copy (a settings change at a million
    addresses costs milliseconds, not a full rebuild that holds the GIL for many seconds).
    Falls back to :func:`load_snapshot` when a revision is not logged, too much changed,
    or an address disappeared (so the hosted-domain set stays exact)."""
    revision = read_revision(session)
    if revision == current.revision:
        return current
    changes = policy_repo.changes_between(session, after=current.revision, upto=revision)
    if changes is None or len(changes.addresses) + len(changes.contract_ids) > MAX_PATCH:
        return load_snapshot(session, current.base_domains)
    conditions = []
    if changes.addresses:
        conditions.append(Address.address.in_(sorted(changes.addresses)))
    if changes.contract_ids:
        conditions.append(Address.contract_id.in_(sorted(changes.contract_ids)))
    rows = session.execute(select(*_ADDRESS_COLUMNS).join(Contract)
                           .where(or_(*conditions))).all() if conditions else []
    fresh = _load_policies(session, rows, ids=[row[0] for row in rows])
    if any(address not in fresh and address in current.by_address
           for address in changes.addresses):
        return load_snapshot(session, current.base_domains)
    by_address = dict(current.by_address)
    by_pop_account = dict(current.by_pop_account)
    for address, policy in fresh.items():
        before = by_address.get(address)
        if before is not None and before.pop_account != policy.pop_account:
            by_pop_account.pop(before.pop_account, None)
        by_address[address] = policy
        by_pop_account[policy.pop_account] = policy
    return PolicySnapshot(
        revision=revision,
        by_address=by_address,
        by_pop_account=by_pop_account,
        hosted_domains=current.hosted_domains | {a.rpartition("@")[2] for a in fresh},
        base_domains=current.base_domains,
    )


def _load_policies(session: Session, rows: Sequence[Row[Any]],
                   ids: list[int] | None) -> dict[str, AddressPolicy]:
    """Policies for address ``rows`` (``_ADDRESS_COLUMNS``); ``ids`` limits the list,
    forwarding and auto-reply queries to those addresses (None: every address).
    Addresses without deny conditions or auto-reply share one immutable default instance,
    and equal list tuples are shared."""
    if ids is not None and not ids:
        return {}

    def only(column: Any) -> Any:
        return column.in_(ids) if ids is not None else true()

    lists: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for address_id, kind, value in session.execute(
        select(ListEntry.address_id, ListEntry.kind, ListEntry.value)
        .where(only(ListEntry.address_id))
        .order_by(ListEntry.address_id, ListEntry.position)
    ):
        lists[address_id][kind].append(value)
    forwards: dict[int, list[str]] = defaultdict(list)
    for address_id, destination in session.execute(
        select(ForwardDestination.address_id, ForwardDestination.destination)
        .where(only(ForwardDestination.address_id))
        .order_by(ForwardDestination.address_id, ForwardDestination.position)
    ):
        forwards[address_id].append(destination)
    replies: dict[int, AutoReplyPolicy] = {}
    for address_id, enabled, special_senders, special_message, default_message in (
        session.execute(select(AutoReply.address_id, AutoReply.enabled,
                               AutoReply.special_senders, AutoReply.special_message,
                               AutoReply.default_message)
                        .where(only(AutoReply.address_id)))
    ):
        replies[address_id] = AutoReplyPolicy(
            enabled=enabled,
            special_senders=frozenset(s.lower() for s in special_senders or ()),
            special_message=special_message,
            default_message=default_message,
        )
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}

    def interned(values: list[str] | None) -> tuple[str, ...]:
        if not values:
            return ()
        key = tuple(values)
        return shared.setdefault(key, key)

    by_address: dict[str, AddressPolicy] = {}
    empty: dict[str, list[str]] = {}
    for (address_id, address, contract_id, pop_account, status, virus_check, spam_judge,
         spam_quarantine, spam_notify, no_from, angle_from, blank_from, no_subject,
         blank_subject, keep_copy, overseas_expires_at, quota_bytes, contract_status,
         ) in rows:
        entry_lists = lists.get(address_id, empty)
        conditions = (
            DenyConditions(no_from=no_from, angle_from=angle_from, blank_from=blank_from,
                           no_subject=no_subject, blank_subject=blank_subject)
            if no_from or angle_from or blank_from or no_subject or blank_subject
            else _NO_CONDITIONS
        )
        by_address[address] = AddressPolicy(
            address=address,
            address_id=address_id,
            contract_id=contract_id,
            pop_account=pop_account,
            # A suspended contract suspends every address under it (003 Art.20(3)).
            status=effective_status(status, contract_status),
            virus_check=virus_check,
            spam_judge=spam_judge,
            spam_quarantine=spam_quarantine,
            spam_notify=spam_notify,
            deny_addresses=interned(entry_lists.get("deny_address")),
            deny_subjects=interned(entry_lists.get("deny_subject")),
            deny_conditions=conditions,
            allow_addresses=interned(entry_lists.get("allow_address")),
            forward_destinations=interned(forwards.get(address_id)),
            forward_keep_copy=keep_copy,
            auto_reply=replies.get(address_id, _NO_AUTO_REPLY),
            overseas_expires_at=(
                as_utc(overseas_expires_at) if overseas_expires_at else None
            ),
            quota_bytes=quota_bytes,
        )
    return by_address
