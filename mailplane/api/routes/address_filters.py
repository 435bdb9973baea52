"""Per-address filter settings (SPEC §3-§4, §11): virus check, spam switches, deny list
and allow list — one GET and one whole-replacing PUT each, for contract-level keys only
(004 function table: a mailbox user may not change them).

Every PUT is audited and bumps the policy revision in the same transaction, and answers
with the values as stored — normalised and deduplicated — so the portal shows exactly
what the MX will apply.  The other settings are :mod:`mailplane.api.routes.address_settings`.
"""

from __future__ import annotations

from fastapi import APIRouter

from mailplane.api.deps import (
    AddressAdminDep,
    ClockDep,
    SessionDep,
    SettingsDep,
)
from mailplane.api.errors import ApiError, invalid, rule_error
from mailplane.api.routes.address_settings import save_setting
from mailplane.api.schemas.settings import (
    AllowList,
    DenyConditionSwitches,
    DenyList,
    SpamSwitches,
    VirusCheck,
)
from mailplane.config.settings import Settings
from mailplane.filters.list_entries import (
    ListEntryError,
    ListSizeError,
    clean_address_list,
    clean_subject_list,
)
from mailplane.filters.spam import check_switches
from mailplane.rules import RuleViolation
from mailplane.storage import settings_repo
from mailplane.storage.models import Address
from mailplane.storage.settings_repo import ALLOW_ADDRESS, DENY_ADDRESS, DENY_SUBJECT

router = APIRouter(prefix="/v1/contracts/{cn}/addresses/{address}", tags=["settings"])


def _list_field(field: str, exc: ListEntryError | ListSizeError) -> ApiError:
    if isinstance(exc, ListEntryError):
        entry_field = f"{field}[{exc.index}]"
        return invalid(entry_field, exc.text)
    return invalid(field, exc.text)


# --- virus check (SPEC §3) --------------------------------------------------------------


@router.get("/virus-check", response_model=VirusCheck)
def get_virus_check(scope: AddressAdminDep) -> VirusCheck:
    return VirusCheck(enabled=scope.address.virus_check)


@router.put("/virus-check", response_model=VirusCheck)
def put_virus_check(
    body: VirusCheck, scope: AddressAdminDep, session: SessionDep, clock: ClockDep
) -> VirusCheck:
    settings_repo.set_virus_check(session, address=scope.address, enabled=body.enabled)
    save_setting(session, scope, clock, "settings.virus_check", {"enabled": body.enabled})
    return VirusCheck(enabled=scope.address.virus_check)


# --- spam check (SPEC §4, L4175-4197) ---------------------------------------------------


def _spam_of(row: Address) -> SpamSwitches:
    return SpamSwitches(judge=row.spam_judge, quarantine=row.spam_quarantine,
                        notify=row.spam_notify)


@router.get("/spam", response_model=SpamSwitches)
def get_spam(scope: AddressAdminDep) -> SpamSwitches:
    return _spam_of(scope.address)


@router.put("/spam", response_model=SpamSwitches)
def put_spam(
    body: SpamSwitches, scope: AddressAdminDep, session: SessionDep, clock: ClockDep
) -> SpamSwitches:
    """Quarantine and notify act on the judge's verdict, so they need judge ON; to turn
    judge OFF the caller sends all three OFF (the portal's form does that for the user)."""
    try:
        check_switches(judge=body.judge, quarantine=body.quarantine, notify=body.notify)
    except RuleViolation as exc:
        raise rule_error(exc, "judge") from None
    settings_repo.set_spam(session, address=scope.address, judge=body.judge,
                           quarantine=body.quarantine, notify=body.notify)
    save_setting(session, scope, clock, "settings.spam", body.model_dump())
    return _spam_of(scope.address)


# --- deny list and allow list (SPEC §4, L4233-4392) ------------------------------------


def _deny_list_of(session: SessionDep, row: Address) -> DenyList:
    return DenyList(
        addresses=settings_repo.list_values(session, address_id=row.id, kind=DENY_ADDRESS),
        subjects=settings_repo.list_values(session, address_id=row.id, kind=DENY_SUBJECT),
        conditions=DenyConditionSwitches(
            no_from=row.deny_no_from,
            angle_from=row.deny_angle_from,
            blank_from=row.deny_blank_from,
            no_subject=row.deny_no_subject,
            blank_subject=row.deny_blank_subject,
        ),
    )


def _clean_addresses(field: str, raw: list[str], settings: Settings) -> list[str]:
    try:
        return clean_address_list(raw, max_entries=settings.addresses.max_list_entries,
                                  max_length=settings.addresses.max_entry_length)
    except (ListEntryError, ListSizeError) as exc:
        raise _list_field(field, exc) from None


@router.get("/deny-list", response_model=DenyList)
def get_deny_list(scope: AddressAdminDep, session: SessionDep) -> DenyList:
    return _deny_list_of(session, scope.address)


@router.put("/deny-list", response_model=DenyList)
def put_deny_list(
    body: DenyList,
    scope: AddressAdminDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> DenyList:
    """Replace the whole deny list; entry rules: :mod:`mailplane.filters.list_entries`."""
    addresses = _clean_addresses("addresses", body.addresses, settings)
    try:
        subjects = clean_subject_list(body.subjects,
                                      max_entries=settings.addresses.max_list_entries,
                                      max_length=settings.addresses.max_entry_length)
    except (ListEntryError, ListSizeError) as exc:
        raise _list_field("subjects", exc) from None
    row = scope.address
    settings_repo.replace_list(session, address_id=row.id, kind=DENY_ADDRESS, values=addresses)
    settings_repo.replace_list(session, address_id=row.id, kind=DENY_SUBJECT, values=subjects)
    conditions = body.conditions.model_dump()
    settings_repo.set_deny_conditions(session, address=row, **conditions)
    save_setting(session, scope, clock, "settings.deny_list",
                 {"addresses": len(addresses), "subjects": len(subjects), "conditions": conditions})
    return _deny_list_of(session, row)


@router.get("/allow-list", response_model=AllowList)
def get_allow_list(scope: AddressAdminDep, session: SessionDep) -> AllowList:
    return AllowList(addresses=settings_repo.list_values(
        session, address_id=scope.address.id, kind=ALLOW_ADDRESS))


@router.put("/allow-list", response_model=AllowList)
def put_allow_list(
    body: AllowList,
    scope: AddressAdminDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> AllowList:
    """Replace the whole allow list (same address rules as the deny list)."""
    addresses = _clean_addresses("addresses", body.addresses, settings)
    settings_repo.replace_list(session, address_id=scope.address.id, kind=ALLOW_ADDRESS,
                               values=addresses)
    save_setting(session, scope, clock, "settings.allow_list", {"addresses": len(addresses)})
    return AllowList(addresses=settings_repo.list_values(
        session, address_id=scope.address.id, kind=ALLOW_ADDRESS))
