"""Addresses (SPEC §1-§2, §11): the settings table, creation, deletion, POP passwords."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailplane.api.changes import record_change
from mailplane.api.deps import (
    AddressScope,
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
from mailplane.api.errors import ApiError, invalid, not_found
from mailplane.api.idempotency import Replay, ReplayStore, request_hash
from mailplane.api.schemas.addresses import (
    AddressCreate,
    AddressCreated,
    AddressList,
    AddressRow,
    PasswordChange,
    PasswordChanged,
    PasswordReissued,
)
from mailplane.api.views import address_row, issued_password, local_date, quota
from mailplane.auth.api_keys import Principal
from mailplane.auth.passwords import generate_password
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.mailstore.paths import mailbox_dir, remove_tree
from mailplane.notices.change import stage_change_notice
from mailplane.rules import RuleViolation
from mailplane.rules.registration import (
    ChargeRequired,
    base_domain,
    check_registration,
    next_slot,
)
from mailplane.storage import addresses_repo, contracts_repo
from mailplane.storage.addresses_repo import AddressSummary
from mailplane.storage.models import Contract

router = APIRouter(prefix="/v1/contracts/{cn}/addresses", tags=["addresses"])


@router.get("", response_model=AddressList)
async def list_addresses(
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
    return await run_in_threadpool(_address_list, session, cn, principal, settings, clock)


def _address_list(session: Session, cn: str, principal: Principal, settings: Settings,
                  clock: Clock) -> AddressList:
    contract = visible_contract(contracts_repo.slots_by_number(session, customer_number=cn),
                                principal)
    rows = addresses_repo.list_for_contract(session, contract_id=contract.id)
    session.close()  # release the connection here, in this thread
    used = len(rows)  # every address of the contract counts against its slots
    if principal.address_id is not None:
        rows = [row for row in rows if row.id == principal.address_id]
    now = clock.now()
    return AddressList(
        contract=contract.customer_number,
        quota=quota(contract, used).model_dump(),
        addresses=[address_row(row, now, settings.tz) for row in rows],
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
        raise invalid(exc.field or "address", str(exc)) from None
    full = f"{body.local_part}@{body.subdomain}.{domain}"
    taken = ApiError(409, "address_taken",
                     f"{full} is not available; choose another subdomain candidate",
                     "subdomain")
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
        raise ApiError(409, "charge_required", str(exc), exc.field) from None
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
    return AddressCreated(
        address=address_row(AddressSummary.of(row), now, settings.tz),
        pop_account=row.pop_account,
        initial_password=issued_password(plain, now, settings.tz),
        quota=quota(contract, used + 1).model_dump(),
    )


@router.get("/{address}", response_model=AddressRow)
def get_address(scope: AddressScopeDep, settings: SettingsDep, clock: ClockDep) -> AddressRow:
    return address_row(AddressSummary.of(scope.address), clock.now(), settings.tz)


@router.delete("/{address}", status_code=204)
def delete_address(
    scope: AddressScopeDep,
    contract: ContractAdminDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Response:
    """Delete the address, its settings, mailbox and quarantine (SPEC §1 ``deleted``)."""
    address = scope.address.address
    now = clock.now()
    if not addresses_repo.delete_address(session, address=scope.address, now=now):
        raise not_found("address not found")  # a concurrent delete of it won
    record_change(
        session,
        principal=scope.principal,
        action="address.delete",
        now=now,
        contract_id=contract.id,
        address=address,
    )
    stage_change_notice(session, settings=settings, contract=contract,
                        action="address.delete", address=address, now=now)
    session.commit()
    # After the commit: mail for the address is refused from the next policy refresh on,
    # and the files go away whole (rename, then delete).
    remove_tree(mailbox_dir(settings.maildir_root, address))
    remove_tree(mailbox_dir(settings.quarantine_root, address))
    return Response(status_code=204)


def _store_password(session: Session, scope: AddressScope, settings: Settings,
                    password_hash: str, action: str, now: datetime) -> None:
    """Save a new POP password hash, audited and notified (SPEC §9), in one transaction —
    only if the stored hash is still the one this request read: of concurrent changes one
    wins and the others get 409, instead of all being told their password is now valid."""
    if not addresses_repo.replace_password_hash(
            session, address=scope.address, expected_hash=scope.address.password_hash,
            password_hash=password_hash, now=now):
        session.rollback()
        raise ApiError(409, "password_changed_meanwhile",
                       "the password was changed by another request at the same time;"
                       " nothing was changed by this one", "current")
    record_change(session, principal=scope.principal, action=action, now=now,
                  contract_id=scope.contract.id, address=scope.address.address,
                  affects_policy=False)
    stage_change_notice(session, settings=settings, contract=scope.contract, action=action,
                        address=scope.address.address, now=now)
    session.commit()


@router.post("/{address}/password", response_model=PasswordChanged)
def change_password(
    body: PasswordChange,
    scope: AddressScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    hashing: HashingDep,
    clock: ClockDep,
) -> PasswordChanged:
    """Change needs the current password (SPEC §1)."""
    if not hashing.verify(scope.address.password_hash, body.current):
        raise invalid("current", "the current password is not correct")
    if body.current == body.new:
        raise invalid("new", "must differ from the current password")
    now = clock.now()
    _store_password(session, scope, settings, hashing.hash(body.new),
                    "address.password_change", now)
    return PasswordChanged(address=scope.address.address, changed_on=local_date(now, settings.tz))


@router.post("/{address}/password/reissue", response_model=PasswordReissued)
def reissue_password(
    scope: AddressScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    hashing: HashingDep,
    clock: ClockDep,
) -> PasswordReissued:
    """Random password with its katakana reading, shown once (SPEC §1, L3974-4039)."""
    password = generate_password(settings.addresses.reissue_password_length)
    now = clock.now()
    _store_password(session, scope, settings, hashing.hash(password),
                    "address.password_reissue", now)
    issued = issued_password(password, now, settings.tz)
    return PasswordReissued(
        address=scope.address.address, pop_account=scope.address.pop_account,
        **issued.model_dump(),
    )
