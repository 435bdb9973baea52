"""Contracts (SPEC §1, §9a, §11): create, read with address quota and charges, the
operator's changes (paid slots, contact address, suspend/resume, 解約/restore), candidates."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

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
from mailplane.auth.api_keys import Principal
from mailplane.config.settings import Settings
from mailplane.delivery import lifecycle
from mailplane.rules import RuleViolation
from mailplane.rules.registration import CANDIDATES_PER_PAGE, base_domain, local_part_violation
from mailplane.rules.subdomains import ordered_for
from mailplane.storage import addresses_repo, billing_repo, contracts_repo
from mailplane.storage.models import Contract

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
            settings=settings,
            contract=contract,
            action="contract.create",
            now=now,
            detail={"customer_number": body.customer_number, "included_addresses": included},
            affects_policy=False,
        )
    except IntegrityError:
        session.rollback()
        raise ApiError(409, "conflict", "a contract with this customer number exists",
                       "customer_number") from None
    return contract_out(contract, 0, settings)


@router.get("/{cn}", response_model=ContractOut)
def get_contract(contract: ContractDep, session: SessionDep,
                 settings: SettingsDep) -> ContractOut:
    return contract_out(contract, contracts_repo.count_addresses(session, contract_id=contract.id),
                        settings)


@router.patch("/{cn}", response_model=ContractOut)
def update_contract(
    body: ContractUpdate,
    contract: ContractDep,
    principal: OperatorDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> ContractOut:
    """Under the contract's lock, like address creation: a slot reduction checks the
    address count that a concurrent registration cannot change before the commit.

    Each change is recorded on its own (:func:`record_change`): paid slots (their
    purchases written or ended, 004 L474-485), the contact address (the old and the new
    address are told, SPEC §9a — a takeover never goes unnoticed), and the status:
    suspend/resume, ``terminated`` (解約 at once, 003 Art.19; :mod:`lifecycle`), and
    ``active`` on a terminated contract (restored, while its data is not purged)."""
    locked = contracts_repo.lock_for_update(session, contract_id=contract.id)
    if locked is None:
        raise not_found("contract not found")
    contract = locked
    now = clock.now()
    used = contracts_repo.count_addresses(session, contract_id=contract.id)
    if contract.status == "terminated" and (body.contact_email or body.extra_slots is not None
                                            or body.status == "suspended"):
        raise ApiError(409, "contract_terminated",
                       "this contract has been terminated; restore it first", "status")
    if body.extra_slots is not None and body.extra_slots != contract.extra_slots:
        _set_extra_slots(session, principal, settings, contract, body.extra_slots, used, now)
    if body.contact_email is not None and body.contact_email != contract.contact_email:
        change_contact(session, principal=principal, settings=settings, contract=contract,
                       new=body.contact_email, now=now)
    if body.status is not None and body.status != contract.status:
        _set_status(session, principal, settings, contract, body.status, now)
    session.commit()
    session.refresh(contract)
    return contract_out(contract, used, settings)


def _set_extra_slots(session: Session, principal: Principal, settings: Settings,
                     contract: Contract, extra_slots: int, used: int, now: datetime) -> None:
    if contract.included_addresses + extra_slots < used:
        raise invalid(
            "extra_slots",
            "{used} addresses are in use; delete some before reducing the paid slots",
            used=used,
        )
    delta = extra_slots - contract.extra_slots
    if delta > 0:
        billing_repo.add(session, contract_id=contract.id, address="", now=now,
                         monthly_yen=settings.addresses.extra_monthly_charge_yen, count=delta)
    else:
        billing_repo.end(session, contract_id=contract.id, now=now, count=-delta)
    contract.extra_slots = extra_slots
    record_change(session, principal=principal, settings=settings, contract=contract,
                  action="contract.update", now=now, detail={"extra_slots": extra_slots},
                  affects_policy=False, commit=False)


def change_contact(session: Session, *, principal: Principal, settings: Settings,
                   contract: Contract, new: str, now: datetime) -> None:
    """Set the contact address and tell both the old and the new one (SPEC §9a).  The
    caller commits."""
    old = contract.contact_email
    contract.contact_email = new
    session.flush()
    record_change(session, principal=principal, settings=settings, contract=contract,
                  action="contract.contact_change", now=now, affects_policy=False,
                  detail={"old": old, "new": new},
                  notes=((f"新しい連絡先メールアドレス: {masked_address(new)}",
                          f"New contact address: {masked_address(new)}"),),
                  recipients=[old, new], commit=False)


def _set_status(session: Session, principal: Principal, settings: Settings,
                contract: Contract, status: str, now: datetime) -> None:
    if status == "terminated":
        lifecycle.terminate(session, settings=settings, actor=principal.actor,
                            contract=contract, now=now, reason="operator (003 Art.19)")
        return
    if contract.status == "terminated":  # back to active
        if not lifecycle.restore(session, settings=settings, actor=principal.actor,
                                 contract=contract, now=now):
            raise ApiError(409, "contract_purged",
                           "the data of this terminated contract has been deleted;"
                           " it cannot be restored", "status")
        return
    contract.status = status
    session.flush()
    record_change(session, principal=principal, settings=settings, contract=contract,
                  action="contract.suspend" if status == "suspended" else "contract.resume",
                  now=now, detail={"status": status}, commit=False)


def masked_address(address: str) -> str:
    """``ta***@example.jp``: enough for the owner of the old contact address to recognise
    (or not) the new one, without handing it to whoever reads the old mailbox."""
    local, _, domain = address.partition("@")
    return f"{local[:2]}***@{domain}"


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
