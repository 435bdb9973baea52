"""``POST /v1/api-keys`` (operator): new key, shown once (SPEC §10-§11)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from mailplane.api.deps import ClockDep, HashingDep, OperatorDep, PrincipalDep, SessionDep
from mailplane.api.errors import ApiError, invalid
from mailplane.api.schemas.keys import ApiKeyCreate, ApiKeyCreated
from mailplane.auth.api_keys import issue_api_key
from mailplane.storage import addresses_repo, contracts_repo

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_api_key(
    body: ApiKeyCreate,
    principal: OperatorDep,
    session: SessionDep,
    hashing: HashingDep,
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
        hashing,
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
