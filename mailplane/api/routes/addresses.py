"""Addresses (SPEC §1-§2, §11): the settings table, creation, deletion, POP passwords."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailplane.api.changes import record_change
from mailplane.api.deps import (
    AddressScopeDep,
    ClockDep,
    ContractAdminDep,
    CustomerNumber,
    HashingDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    visible_contract,
)
from mailplane.api.errors import ApiError, rule_error
from mailplane.api.schemas.addresses import (
    AddressCreate,
    AddressCreated,
    AddressList,
    AddressRow,
)
from mailplane.api.views import address_row, issued_password, quota
from mailplane.auth.api_keys import Principal
from mailplane.auth.passwords import generate_password
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.mailstore.maildir import MaildirUsage
from mailplane.mailstore.paths import mailbox_dir, remove_tree
from mailplane.notices.change import stage_change_notice
from mailplane.rules import RuleViolation
from mailplane.rules.registration import (
    ChargeRequired,
    base_domain,
    check_registration,
    next_slot,
    paid_slot_freed,
)
from mailplane.storage import addresses_repo, contracts_repo, idempotency_repo
from mailplane.storage.addresses_repo import AddressSummary

router = APIRouter(prefix="/v1/contracts/{cn}/addresses", tags=["addresses"])


@router.get("", response_model=AddressList)
async def list_addresses(
    request: Request,
    cn: CustomerNumber,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> AddressList:
    """The whole settings table in one call, so the portal draws it with one request.

    The portal makes this call on every page view, so all of its SQL (the contract and
    scope check, the table) runs in one thread hop instead of one per dependency.
    """
    return await run_in_threadpool(_address_list, session, cn, principal, settings, clock,
                                   request.app.state)


def _address_list(session: Session, cn: str, principal: Principal, settings: Settings,
                  clock: Clock, request_state: Any) -> AddressList:
    contract = visible_contract(contracts_repo.slots_by_number(session, customer_number=cn),
                                principal)
    rows = addresses_repo.list_for_contract(session, contract_id=contract.id)
    session.close()  # release the connection here, in this thread
    used = len(rows)  # every address of the contract counts against its slots
    if principal.address_id is not None:
        rows = [row for row in rows if row.id == principal.address_id]
    now = clock.now()
    usage: MaildirUsage = request_state.maildir_usage
    return AddressList(
        contract=contract.customer_number,
        quota=quota(contract, used).model_dump(),
        addresses=[address_row(row, now, settings.tz, contract_status=contract.status,
                               used_bytes=usage.used(row.address)) for row in rows],
    )


def _request_hash(body: AddressCreate) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def _replay(record_status: int, record_body: bytes, response: Response) -> AddressCreated:
    response.status_code = record_status
    response.headers["Idempotent-Replayed"] = "true"
    return AddressCreated.model_validate_json(record_body)


def _new_pop_account(session: Session) -> str:
    """``m`` + 7 digits (L3929), distinct from the address and from every other account."""
    while True:
        candidate = f"m{secrets.randbelow(10**7):07d}"
        if not addresses_repo.pop_account_exists(session, pop_account=candidate):
            return candidate


@router.post("", status_code=201, response_model=AddressCreated)
def create_address(
    body: AddressCreate,
    response: Response,
    contract: ContractAdminDep,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    hashing: HashingDep,
    clock: ClockDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> AddressCreated:
    """Register an address.  A repeated ``Idempotency-Key`` returns the first result
    (SPEC §1: the manual warns that double clicks create duplicates) — without the
    password, which is shown only once."""
    scope = f"{contract.id}:create-address"
    request_hash = _request_hash(body)
    if idempotency_key:
        previous = idempotency_repo.get(session, scope=scope, key=idempotency_key)
        if previous is not None:
            if previous.request_hash != request_hash:
                raise ApiError(422, "idempotency_mismatch",
                               "Idempotency-Key was already used for a different request",
                               "Idempotency-Key")
            return _replay(previous.status_code, previous.response_body, response)
    if contract.status != "active":
        raise ApiError(409, "contract_suspended", "the contract is suspended")
    try:
        check_registration(accept_terms=body.accept_terms, subdomain=body.subdomain,
                           pattern=settings.addresses.subdomain_pattern)
        domain = base_domain(body.base_domain, settings.base_domains)
    except RuleViolation as exc:
        raise rule_error(exc, "address") from None
    now = clock.now()
    full = f"{body.local_part}@{body.subdomain}.{domain}"
    cooloff = timedelta(days=settings.addresses.deleted_cooloff_days)
    if addresses_repo.unavailable_among(session, addresses=[full], now=now, cooloff=cooloff):
        raise ApiError(409, "address_taken",
                       "{address} is not available; choose another subdomain candidate",
                       "subdomain", address=full)
    contracts_repo.lock_for_update(session, contract_id=contract.id)
    used = contracts_repo.count_addresses(session, contract_id=contract.id)
    try:
        slot = next_slot(included=contract.included_addresses, extra_slots=contract.extra_slots,
                         used=used, accept_charge=body.accept_charge,
                         charge_yen=settings.addresses.extra_monthly_charge_yen)
    except ChargeRequired as exc:
        raise ApiError(409, "charge_required", exc.text, exc.field) from None
    contract.extra_slots = slot.extra_slots
    password = generate_password(settings.addresses.reissue_password_length)
    row = addresses_repo.create_address(
        session,
        contract_id=contract.id,
        local_part=body.local_part,
        subdomain=body.subdomain,
        base_domain=domain,
        pop_account=_new_pop_account(session),
        password_hash=hashing.hash(password),
        virus_check=body.virus_check,
        quota_bytes=settings.addresses.default_quota_bytes,
        now=now,
    )
    record_change(
        session,
        principal=principal,
        action="address.create",
        now=now,
        contract_id=contract.id,
        address=row.address,
        detail={"virus_check": body.virus_check, "paid_slot": slot.paid_slot},
    )
    stage_change_notice(session, settings=settings, contract=contract,
                        action="address.create", address=row.address, now=now)
    result = AddressCreated(
        address=address_row(AddressSummary.of(row), now, settings.tz),
        pop_account=row.pop_account,
        initial_password=issued_password(password, now, settings.tz),
        quota=quota(contract, used + 1).model_dump(),
    )
    if idempotency_key:
        stored = result.model_copy(update={"initial_password": None})
        idempotency_repo.save(
            session,
            scope=scope,
            key=idempotency_key,
            request_hash=request_hash,
            status_code=201,
            response_body=stored.model_dump_json().encode(),
            now=now,
        )
    try:
        session.commit()
    except IntegrityError:
        # Lost a race: the same Idempotency-Key or the same address committed first.
        session.rollback()
        if idempotency_key:
            previous = idempotency_repo.get(session, scope=scope, key=idempotency_key)
            if previous is not None and previous.request_hash == request_hash:
                return _replay(previous.status_code, previous.response_body, response)
        raise ApiError(409, "address_taken", "{address} is not available", "subdomain",
                       address=full) from None
    return result


@router.get("/{address}", response_model=AddressRow)
def get_address(scope: AddressScopeDep, settings: SettingsDep, clock: ClockDep) -> AddressRow:
    return address_row(AddressSummary.of(scope.address), clock.now(), settings.tz,
                       contract_status=scope.contract.status)


@router.delete("/{address}", status_code=204)
def delete_address(
    scope: AddressScopeDep,
    contract: ContractAdminDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    """Delete the address, its settings, mailbox and quarantine (SPEC §1 ``deleted``);
    a paid slot it used ends with it (:func:`paid_slot_freed`)."""
    address = scope.address.address
    now = clock.now()
    contracts_repo.lock_for_update(session, contract_id=contract.id)
    addresses_repo.delete_address(session, address=scope.address, now=now)
    session.flush()  # counted below without it, in this (write) transaction
    slots = contracts_repo.slots_by_number(session, customer_number=contract.customer_number)
    remaining = contracts_repo.count_addresses(session, contract_id=contract.id)
    freed = slots is not None and paid_slot_freed(
        included=slots.included_addresses, extra_slots=slots.extra_slots, remaining=remaining)
    if freed:
        contracts_repo.release_paid_slot(session, contract_id=contract.id)
    record_change(
        session,
        principal=scope.principal,
        action="address.delete",
        now=now,
        contract_id=contract.id,
        address=address,
        detail={"paid_slot_freed": freed},
    )
    stage_change_notice(session, settings=settings, contract=contract,
                        action="address.delete", address=address, now=now)
    session.commit()
    # After the commit: mail for the address is refused from the next policy refresh on,
    # and the files go away whole (rename, then delete).
    remove_tree(mailbox_dir(settings.maildir_root, address))
    remove_tree(mailbox_dir(settings.quarantine_root, address))
    return Response(status_code=204)
