"""``GET /v1/contracts/{cn}/audit``: who changed what, when (SPEC §9, §11)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mailplane.api.deps import ContractDep, PrincipalDep, SessionDep
from mailplane.api.schemas.audit import AuditEntry, AuditPage
from mailplane.auth.api_keys import Principal
from mailplane.clock import as_utc
from mailplane.storage import audit_repo
from mailplane.storage.models import Address

router = APIRouter(prefix="/v1/contracts/{cn}/audit", tags=["audit"])

#: Paging deeper than any contract's log is refused (422), not passed to the database,
#: where an offset beyond 64 bits was a 500.
MAX_OFFSET = 1_000_000_000
_STAFF_ROLES = ("operator", "portal")


def shown_actor(actor: str, viewer: Principal) -> str:
    """``role:key_id`` for staff viewers; only the role of a staff actor for customers."""
    role = actor.partition(":")[0]
    return role if role in _STAFF_ROLES and not viewer.is_staff else actor


@router.get("", response_model=AuditPage)
def list_audit(
    contract: ContractDep,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> AuditPage:
    """Newest first.  A customer sees who acted on its contract, but an operator or the
    portal service only by role: their key ids identify keys of the ISP's staff, which a
    customer has no use for and an attacker would (issue 15)."""
    only_address = None
    if principal.address_id is not None:
        row = session.get(Address, principal.address_id)
        only_address = row.address if row else ""
    entries = audit_repo.list_for_contract(
        session, contract_id=contract.id, limit=limit, offset=offset, address=only_address
    )
    return AuditPage(
        contract=contract.customer_number,
        entries=[
            AuditEntry(at=as_utc(e.at), actor=shown_actor(e.actor, principal),
                       action=e.action, address=e.address, detail=e.detail)
            for e in entries
        ],
    )
