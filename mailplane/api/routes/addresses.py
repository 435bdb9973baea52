"""Addresses (SPEC §1-§2, §11): the settings table, creation, deletion, POP passwords."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
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
from mailplane.api.errors import ApiError, not_found, rule_error
from mailplane.api.idempotency import Replay, ReplayStore, request_hash
from mailplane.api.schemas.addresses import (
    AddressCreate,
    AddressCreated,
    AddressList,
    AddressRow,
)
from mailplane.api.views import address_row, charge_notes, charges, issued_password, quota
from mailplane.auth.api_keys import Principal
from mailplane.auth.passwords import generate_password
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.mailstore.maildir import MaildirUsage
from mailplane.mailstore.paths import mailbox_dir, remove_tree
from mailplane.rules import RuleViolation
from mailplane.rules.registration import (
    ChargeRequired,
    base_domain,
    check_registration,
    next_slot,
    paid_slot_freed,
)
from mailplane.storage import addresses_repo, billing_repo, contracts_repo
from mailplane.storage.addresses_repo import AddressSummary
from mailplane.storage.models import Contract

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
        charges=charges(contract, used, settings.addresses.extra_monthly_charge_yen),
        addresses=[address_row(row, now, settings.tz, contract_status=contract.status,
                               used_bytes=usage.used(row.address)) for row in rows],
    )


def _replayed(replay: Replay, response: Response) -> AddressCreated:
    response.status_code = replay.status_code
    response.headers["Idempotent-Replayed"] = "true"
    return AddressCreated.model_validate_json(replay.body)


def _new_pop_account(session: Session) -> str:
    """``m`` + 7 digits (L3929), distinct from the address and from every other account."""
    while True:
        candidate = f"m{secrets.randbelow(10**7):07d}"
        if not addresses_repo.pop_account_exists(session, pop_account=candidate):
            return candidate


@router.post("", status_code=201, response_model=AddressCreated)
def create_address(
    body: AddressCreate,
    request: Request,
    response: Response,
    contract: ContractAdminDep,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    hashing: HashingDep,
    clock: ClockDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> AddressCreated:
    """Register an address.  A repeated ``Idempotency-Key`` returns the first response,
    initial password included, for ``api.idempotency_hours`` (SPEC §1: the manual warns
    that double clicks create duplicates; issue 14).

    The slot decision runs under the contract's lock, and the key is looked up again
    under it: of concurrent requests with one key, one creates and the others replay it;
    of concurrent requests for one address, one creates and the others get 409.
    """
    replays: ReplayStore = request.app.state.replays
    scope = f"{contract.id}:create-address"
    fingerprint = request_hash(body.model_dump_json().encode())
    now = clock.now()
    if idempotency_key:
        known = replays.find(session, scope=scope, key=idempotency_key,
                             request_hash=fingerprint, now=now)
        if known is not None:
            return _replayed(known, response)
    if contract.status != "active":  # checked again under the lock
        raise ApiError(409, "contract_suspended", "the contract is suspended")
    try:
        check_registration(accept_terms=body.accept_terms, subdomain=body.subdomain,
                           pattern=settings.addresses.subdomain_pattern)
        domain = base_domain(body.base_domain, settings.base_domains)
    except RuleViolation as exc:
        raise rule_error(exc, "address") from None
    full = f"{body.local_part}@{body.subdomain}.{domain}"
    taken = ApiError(409, "address_taken",
                     "{address} is not available; choose another subdomain candidate",
                     "subdomain", address=full)
    # Hashed before the lock: on SQLite the lock is the database's write lock, which mail
    # delivery needs too, so nothing slow happens while it is held.
    password = generate_password(settings.addresses.reissue_password_length)
    password_hash = hashing.hash(password)
    try:
        locked = contracts_repo.lock_for_update(session, contract_id=contract.id)
        if idempotency_key:
            known = replays.find(session, scope=scope, key=idempotency_key,
                                 request_hash=fingerprint, now=now)
            if known is not None:
                session.rollback()
                return _replayed(known, response)
        if locked is None or locked.status != "active":
            raise ApiError(409, "contract_suspended", "the contract is suspended")
        cooloff = timedelta(days=settings.addresses.deleted_cooloff_days)
        if addresses_repo.unavailable_among(session, addresses=[full], now=now,
                                            cooloff=cooloff):
            raise taken
        result = _register(session, body, locked, domain, principal, settings,
                           (password, password_hash), now)
        if idempotency_key:
            replays.save(session, scope=scope, key=idempotency_key, request_hash=fingerprint,
                         status_code=201, body=result.model_dump_json().encode(), now=now)
        session.commit()
    except IntegrityError:
        # Another contract registered the same address between our check and our insert
        # (the lock is per contract; the unique index decides).
        session.rollback()
        raise taken from None
    return result


def _register(session: Session, body: AddressCreate, contract: Contract, domain: str,
              principal: Principal, settings: Settings, password: tuple[str, str],
              now: datetime) -> AddressCreated:
    """Take a slot and create the address, audit and notice (the caller holds the lock)."""
    used = contracts_repo.count_addresses(session, contract_id=contract.id)
    try:
        slot = next_slot(included=contract.included_addresses, extra_slots=contract.extra_slots,
                         used=used, accept_charge=body.accept_charge,
                         charge_yen=settings.addresses.extra_monthly_charge_yen)
    except ChargeRequired as exc:
        raise ApiError(409, "charge_required", exc.text, exc.field) from None
    bought = slot.extra_slots - contract.extra_slots
    contract.extra_slots = slot.extra_slots
    plain, password_hash = password
    row = addresses_repo.create_address(
        session,
        contract_id=contract.id,
        local_part=body.local_part,
        subdomain=body.subdomain,
        base_domain=domain,
        pop_account=_new_pop_account(session),
        password_hash=password_hash,
        virus_check=body.virus_check,
        quota_bytes=settings.addresses.default_quota_bytes,
        now=now,
    )
    charge = settings.addresses.extra_monthly_charge_yen
    if bought:
        # The billing record, in the address's own transaction (004 L474-485).
        billing_repo.add(session, contract_id=contract.id, address=row.address,
                         monthly_yen=charge, now=now, count=bought)
    record_change(
        session,
        principal=principal,
        settings=settings,
        contract=contract,
        action="address.create",
        now=now,
        address=row.address,
        detail={"virus_check": body.virus_check, "paid_slot": slot.paid_slot},
        notes=charge_notes(charge, contract.extra_slots) if bought else (),
        commit=False,
    )
    return AddressCreated(
        address=address_row(AddressSummary.of(row), now, settings.tz),
        pop_account=row.pop_account,
        initial_password=issued_password(plain, now, settings.tz),
        quota=quota(contract, used + 1).model_dump(),
        charges=charges(contract, used + 1, charge),
    )


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
    if not addresses_repo.delete_address(session, address=scope.address, now=now):
        raise not_found("address not found")  # a concurrent delete of it won
    session.flush()  # counted below without it, in this (write) transaction
    slots = contracts_repo.slots_by_number(session, customer_number=contract.customer_number)
    remaining = contracts_repo.count_addresses(session, contract_id=contract.id)
    freed = slots is not None and paid_slot_freed(
        included=slots.included_addresses, extra_slots=slots.extra_slots, remaining=remaining)
    if freed:
        contracts_repo.release_paid_slot(session, contract_id=contract.id)
        billing_repo.end(session, contract_id=contract.id, now=now, address=address)
    record_change(
        session,
        principal=scope.principal,
        settings=settings,
        contract=contract,
        action="address.delete",
        now=now,
        address=address,
        detail={"paid_slot_freed": freed},
    )
    # After the commit: mail for the address is refused from the next policy refresh on,
    # and the files go away whole (rename, then delete).
    remove_tree(mailbox_dir(settings.maildir_root, address))
    remove_tree(mailbox_dir(settings.quarantine_root, address))
    return Response(status_code=204)
