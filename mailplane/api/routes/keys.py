"""``POST /v1/api-keys`` (operator): new key, shown once (SPEC §10-§11);
``DELETE /v1/api-keys/{key_id}`` (operator): revoke it, refused from the next request on
every node."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from mailplane.api.deps import ClockDep, OperatorDep, PrincipalDep, SessionDep
from mailplane.api.errors import ApiError, invalid, not_found
from mailplane.api.schemas.keys import ApiKeyCreate, ApiKeyCreated
from mailplane.auth.api_keys import issue_api_key
from mailplane.storage import addresses_repo, api_keys_repo, audit_repo, contracts_repo

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_api_key(
    body: ApiKeyCreate,
    principal: OperatorDep,
    session: SessionDep,
    clock: ClockDep,
) -> ApiKeyCreated:
    contract_id: int | None = None
    address_id: int | None = None
    if body.role == "customer":
        if not body.contract:
            raise invalid("contract", "a customer key needs the contract's customer number")
        contract = contracts_repo.get_by_number(session, customer_number=body.contract)
        if contract is None:
            raise ApiError(422, "invalid", "no such contract", "contract")
        contract_id = contract.id
        if body.address:
            address_id = addresses_repo.id_in_contract(session, contract_id=contract.id,
                                                       address=body.address)
            if address_id is None:
                raise ApiError(422, "invalid", "not an address of this contract", "address")
    elif body.contract or body.address:
        raise invalid("role", "only customer keys are bound to a contract or address")
    key_id, full_key = issue_api_key(
        session,
        role=body.role,
        now=clock.now(),
        actor=principal.actor,
        contract_id=contract_id,
        address_id=address_id,
        label=body.label,
    )
    session.commit()
    return ApiKeyCreated(
        key_id=key_id,
        role=body.role,
        contract=body.contract,
        address=body.address.lower() if body.address else None,
        api_key=full_key,
    )


@router.delete("/{key_id}", status_code=204)
def revoke_api_key(
    key_id: Annotated[str, Path(max_length=32)],
    principal: OperatorDep,
    session: SessionDep,
    clock: ClockDep,
) -> Response:
    """Revoke a key: every node refuses it from its next request (keys are not cached)."""
    now = clock.now()
    key = api_keys_repo.get_active_key(session, key_id=key_id)
    if key is None or not api_keys_repo.revoke(session, key_id=key_id, now=now):
        raise not_found("API key not found")
    audit_repo.record(session, actor=principal.actor, action="api_key.revoke", now=now,
                      contract_id=key.contract_id, detail={"key_id": key_id})
    session.commit()
    return Response(status_code=204)


me_router = APIRouter(prefix="/v1/me", tags=["api keys"])


class Me(BaseModel):
    """Who the key belongs to, so a portal can open the right contract after sign-in."""

    role: str
    contract: str | None
    address: str | None


@me_router.get("", response_model=Me)
def whoami(principal: PrincipalDep, session: SessionDep) -> Me:
    contract = (
        contracts_repo.get_by_id(session, contract_id=principal.contract_id)
        if principal.contract_id is not None else None
    )
    address = (addresses_repo.address_of(session, address_id=principal.address_id)
               if principal.address_id else None)
    return Me(
        role=principal.role,
        contract=contract.customer_number if contract else None,
        address=address,
    )
