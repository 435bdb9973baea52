"""Every write through the API goes clean → repository → :func:`record_change`: one call
that audits it, bumps the policy revision when mail handling changes, queues the notice the
spec asks for (all three in :func:`mailplane.delivery.changes.record`, shared with the
periodic contract jobs) and commits — so routes stay thin and no route can forget a part
(SPEC §9; DESIGN "Keeping the SMTP path fast").

:func:`check_writable` is the other half of the rule: a contract that is not active
(suspended, 003 Art.16; terminated, Art.18-19) is changed only by the operator (SPEC §9a).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from mailplane.api.errors import ApiError
from mailplane.auth.api_keys import Principal
from mailplane.config.settings import Settings
from mailplane.delivery.changes import ChangedContract, record


class _Status(Protocol):
    @property
    def status(self) -> str: ...


def record_change(
    session: Session,
    *,
    principal: Principal,
    settings: Settings | None,
    contract: ChangedContract,
    action: str,
    now: datetime,
    address: str | None = None,
    detail: dict[str, object] | None = None,
    affects_policy: bool = True,
    notes: Sequence[tuple[str, str]] = (),
    recipients: Sequence[str] | None = None,
    commit: bool = True,
) -> None:
    """Record ``action`` by ``principal`` and commit (``commit=False``: the caller adds
    more to the transaction and commits it)."""
    record(session, settings=settings, actor=principal.actor, contract=contract,
           action=action, now=now, address=address, detail=detail,
           affects_policy=affects_policy, notes=notes, recipients=recipients)
    if commit:
        session.commit()


def check_writable(contract: _Status, principal: Principal) -> None:
    """Only the operator changes a contract that is not active — not a customer key, a
    portal session, nor the portal service acting for a customer.  A suspended contract
    is the operator's until it is resumed (003 Art.16, Art.20(3)); a terminated one is
    over (Art.20(4)).  403, naming the state."""
    if principal.role == "operator" or contract.status == "active":
        return
    if contract.status == "terminated":
        raise ApiError(403, "contract_terminated",
                       "this contract has been terminated; nothing can be changed")
    raise ApiError(403, "contract_suspended",
                   "this contract is suspended, so it cannot be changed; please contact"
                   " the support centre")
