"""Contracts (SPEC §1, §11): create, read with address quota, suspend/resume, candidates."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.exc import IntegrityError

from mailplane.api.changes import record_change
from mailplane.api.deps import (
    ClockDep,
    ContractAdminDep,
    ContractDep,
    OperatorDep,
    SessionDep,
    SettingsDep,
)
from mailplane.api.errors import ApiError, invalid, not_found, rule_error
from mailplane.api.schemas.addresses import SubdomainCandidate, SubdomainCandidates
from mailplane.api.schemas.contracts import ContractCreate, ContractOut, ContractUpdate
from mailplane.api.views import contract_out
from mailplane.rules import RuleViolation
from mailplane.rules.registration import CANDIDATES_PER_PAGE, base_domain, local_part_violation
from mailplane.rules.subdomains import ordered_for
from mailplane.storage import addresses_repo, contracts_repo

router = APIRouter(prefix="/v1/contracts", tags=["contracts"])



@router.post("", status_code=201, response_model=ContractOut)
def create_contract(
    body: ContractCreate,
    principal: OperatorDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> ContractOut:
    now = clock.now()
    included = (
        body.included_addresses
        if body.included_addresses is not None
        else settings.addresses.included_per_contract
    )
    try:
        contract = contracts_repo.create_contract(
            session,
            customer_number=body.customer_number,
            contact_email=body.contact_email,
            included_addresses=included,
            now=now,
        )
        record_change(
            session,
            principal=principal,
            action="contract.create",
            now=now,
            contract_id=contract.id,
            detail={"customer_number": body.customer_number, "included_addresses": included},
            affects_policy=False,
        )
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(409, "conflict", "a contract with this customer number exists",
                       "customer_number") from None
    return contract_out(contract, used=0)


@router.get("/{cn}", response_model=ContractOut)
def get_contract(contract: ContractDep, session: SessionDep) -> ContractOut:
    return contract_out(contract, contracts_repo.count_addresses(session, contract_id=contract.id))


@router.patch("/{cn}", response_model=ContractOut)
def update_contract(
    body: ContractUpdate,
    contract: ContractDep,
    principal: OperatorDep,
    session: SessionDep,
    clock: ClockDep,
) -> ContractOut:
    """Under the contract's lock, like address creation: a slot reduction checks the
    address count that a concurrent registration cannot change before the commit."""
    locked = contracts_repo.lock_for_update(session, contract_id=contract.id)
    if locked is None:
        raise not_found("contract not found")
    contract = locked
    used = contracts_repo.count_addresses(session, contract_id=contract.id)
    changes: dict[str, object] = {}
    if body.extra_slots is not None:
        if contract.included_addresses + body.extra_slots < used:
            raise invalid(
                "extra_slots",
                "{used} addresses are in use; delete some before reducing the paid slots",
                used=used,
            )
        contract.extra_slots = body.extra_slots
        changes["extra_slots"] = body.extra_slots
    if body.contact_email is not None:
        contract.contact_email = body.contact_email
        changes["contact_email"] = body.contact_email
    if body.status is not None:
        contract.status = body.status
        changes["status"] = body.status
    record_change(
        session,
        principal=principal,
        action="contract.update",
        now=clock.now(),
        contract_id=contract.id,
        detail=changes,
        affects_policy="status" in changes,
    )
    session.commit()
    return contract_out(contract, used)


@router.get("/{cn}/subdomain-candidates", response_model=SubdomainCandidates)
def subdomain_candidates(
    contract: ContractAdminDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    local_part: Annotated[str, Query(description="the local part the customer wants")],
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
    requested_domain: Annotated[str | None, Query(alias="base_domain")] = None,
) -> SubdomainCandidates:
    problem = local_part_violation(local_part)
    if problem:
        raise invalid("local_part", problem)
    try:
        domain = base_domain(requested_domain, settings.base_domains)
    except RuleViolation as exc:
        raise rule_error(exc, "base_domain") from None
    ordered = ordered_for(local_part, settings.addresses.subdomain_pattern)
    wanted = page * CANDIDATES_PER_PAGE
    free: list[str] = []
    cooloff = timedelta(days=settings.addresses.deleted_cooloff_days)
    # Check availability in batches until enough free candidates are found for this page.
    batch = 60
    for start in range(0, len(ordered), batch):
        chunk = ordered[start : start + batch]
        full = [f"{local_part}@{sub}.{domain}" for sub in chunk]
        taken = addresses_repo.unavailable_among(
            session, addresses=full, now=clock.now(), cooloff=cooloff
        )
        free.extend(sub for sub, addr in zip(chunk, full, strict=True) if addr not in taken)
        if len(free) > wanted:
            break
    page_items = free[wanted - CANDIDATES_PER_PAGE : wanted]
    return SubdomainCandidates(
        local_part=local_part,
        base_domain=domain,
        page=page,
        candidates=[
            SubdomainCandidate(subdomain=sub, address=f"{local_part}@{sub}.{domain}")
            for sub in page_items
        ],
        has_more=len(free) > wanted,
    )
