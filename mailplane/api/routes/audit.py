"""``GET /v1/contracts/{cn}/audit``: who changed what, when (SPEC §9, §11)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mailplane.api.deps import ContractDep, PrincipalDep, SessionDep
from mailplane.api.schemas.audit import AuditEntry, AuditPage
from mailplane.clock import as_utc
from mailplane.storage import audit_repo
from mailplane.storage.models import Address

router = APIRouter(prefix="/v1/contracts/{cn}/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
def list_audit(
    contract: ContractDep,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
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
            AuditEntry(at=as_utc(e.at), actor=e.actor, action=e.action, address=e.address,
                       detail=e.detail)
            for e in entries
        ],
    )
