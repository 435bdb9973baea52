"""Every write through the API is audited and, when it touches mail handling, bumps the
policy revision in the same transaction (SPEC §9; DESIGN "Keeping the SMTP path fast")."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mailplane.auth.api_keys import Principal
from mailplane.storage import audit_repo, policy_repo


def record_change(
    session: Session,
    *,
    principal: Principal,
    action: str,
    now: datetime,
    contract_id: int | None,
    address: str | None = None,
    detail: dict[str, object] | None = None,
    affects_policy: bool = True,
) -> None:
    """Add the audit row (no secrets in ``detail``) and bump the policy revision."""
    audit_repo.record(
        session,
        actor=principal.actor,
        action=action,
        now=now,
        contract_id=contract_id,
        address=address,
        detail=detail,
    )
    if affects_policy:
        # Logged per address (or per contract): SMTP nodes reload only what changed.
        policy_repo.bump_revision(session, address=address,
                                  contract_id=None if address else contract_id, now=now)
