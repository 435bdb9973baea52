"""The one way a change to a contract or an address is recorded (SPEC §9; DESIGN "Keeping
the SMTP path fast"): in the caller's transaction, the audit row (never a secret in it),
the policy revision bump when mail handling changes (logged per address, or per contract,
so SMTP nodes reload just that), and the notice the spec asks for
(:mod:`mailplane.notices.change` decides which changes notify).

The API's routes reach it through :func:`mailplane.api.changes.record_change` (which adds
the caller and the commit); the periodic contract jobs (:mod:`mailplane.delivery.lifecycle`)
call it directly as the system.  So a change reads the same in the audit log, reaches the
MX the same way and tells the customer the same way whoever made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from mailplane.config.settings import Settings
from mailplane.notices.change import notifies, stage_change_notice
from mailplane.storage import audit_repo, policy_repo

#: What the audit log names as the actor of a change the node made by itself.
SYSTEM_ACTOR = "system:lifecycle"

#: Changes after which no session opened before may go on reading the mailbox: what let
#: it log in is no longer valid.  A reissue after a theft must shut the thief's IMAP IDLE
#: out too, not only the next login (SPEC §9b; 003 Art.20(3)); a contract's change ends
#: the sessions of each of its addresses.  Every node holding sessions finds them in the
#: audit log (:mod:`mailplane.delivery.session_ends`), so the change may be made on any
#: node.
ENDS_SESSIONS = frozenset({
    "address.password_change", "address.password_reissue", "address.suspend",
    "address.delete", "address.purge", "contract.suspend", "contract.terminate",
    "contract.purge",
})


class ChangedContract(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def customer_number(self) -> str: ...

    @property
    def contact_email(self) -> str: ...


def record(
    session: Session,
    *,
    settings: Settings | None,
    actor: str,
    contract: ChangedContract,
    action: str,
    now: datetime,
    address: str | None = None,
    detail: dict[str, object] | None = None,
    affects_policy: bool = True,
    notes: Sequence[tuple[str, str]] = (),
    recipients: Sequence[str] | None = None,
) -> None:
    """Audit ``action``, bump the policy revision (``affects_policy``) and queue its
    notice (if it has one) — all in the caller's transaction; the caller commits.
    ``settings`` may be None only for changes that notify nobody."""
    audit_repo.record(session, actor=actor, action=action, now=now, contract_id=contract.id,
                      address=address, detail=detail)
    if affects_policy:
        policy_repo.bump_revision(session, address=address,
                                  contract_id=None if address else contract.id, now=now)
    if notifies(action, address):
        if settings is None:
            raise ValueError(f"{action} sends a notice: pass the settings")
        stage_change_notice(session, settings=settings, contract=contract, action=action,
                            address=address, now=now, notes=notes, recipients=recipients)
