"""Per-address mail settings (SPEC §3-§8, §11): one GET and one whole-replacing PUT each.

Who may call what (SPEC §10, 004 function table): a contract-level key changes everything; a
mailbox-scoped customer key changes only its own forwarding and auto-reply (403 elsewhere).
Every PUT is audited and bumps the policy revision in the same transaction
(:func:`record_change`), and answers with the values as stored — normalised and
deduplicated — so the portal shows exactly what the MX will apply.
"""

from __future__ import annotations

from fastapi import APIRouter

from mailplane.api.changes import record_change
from mailplane.api.deps import (
    AddressAdminDep,
    AddressScope,
    AddressScopeDep,
    ClockDep,
    OperatorDep,
    SessionDep,
    SettingsDep,
)
from mailplane.api.errors import ApiError, invalid, rule_error
from mailplane.api.schemas.addresses import OverseasSummary
from mailplane.api.schemas.settings import (
    AllowList,
    AutoReplySettings,
    DenyConditionSwitches,
    DenyList,
    Forwarding,
    ForwardingUpdate,
    OverseasUpdate,
    QuotaOut,
    QuotaUpdate,
    SpamSwitches,
    VirusCheck,
)
from mailplane.api.views import overseas_summary
from mailplane.clock import as_utc
from mailplane.config.settings import Settings
from mailplane.filters.auto_reply import clean_settings
from mailplane.filters.forwarding import clean_destinations
from mailplane.filters.list_entries import (
    ListEntryError,
    ListSizeError,
    clean_address_list,
    clean_subject_list,
)
from mailplane.filters.overseas_window import expiry_after, window_open
from mailplane.filters.spam import check_switches
from mailplane.notices.change import stage_change_notice
from mailplane.rules import RuleViolation
from mailplane.rules.quota import check_quota
from mailplane.storage import settings_repo
from mailplane.storage.models import Address
from mailplane.storage.settings_repo import ALLOW_ADDRESS, DENY_ADDRESS, DENY_SUBJECT

router = APIRouter(prefix="/v1/contracts/{cn}/addresses/{address}", tags=["settings"])



def _save(
    session: SessionDep,
    scope: AddressScope,
    clock: ClockDep,
    action: str,
    detail: dict[str, object],
) -> None:
    record_change(
        session,
        principal=scope.principal,
        action=action,
        now=clock.now(),
        contract_id=scope.contract.id,
        address=scope.address.address,
        detail=detail,
    )
    session.commit()


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
    _save(session, scope, clock, "settings.virus_check", {"enabled": body.enabled})
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
    _save(session, scope, clock, "settings.spam", body.model_dump())
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
    _save(session, scope, clock, "settings.deny_list",
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
    _save(session, scope, clock, "settings.allow_list", {"addresses": len(addresses)})
    return AllowList(addresses=settings_repo.list_values(
        session, address_id=scope.address.id, kind=ALLOW_ADDRESS))


# --- forwarding (SPEC §5, L4396-4523) ---------------------------------------------------


def _forwarding_of(session: SessionDep, row: Address) -> Forwarding:
    destinations = settings_repo.forward_destinations(session, address_id=row.id)
    return Forwarding(enabled=bool(destinations), destinations=destinations,
                      keep_copy=row.forward_keep_copy)


@router.get("/forwarding", response_model=Forwarding)
def get_forwarding(scope: AddressScopeDep, session: SessionDep) -> Forwarding:
    return _forwarding_of(session, scope.address)


@router.put("/forwarding", response_model=Forwarding)
def put_forwarding(
    body: ForwardingUpdate, scope: AddressScopeDep, session: SessionDep, clock: ClockDep,
    settings: SettingsDep,
) -> Forwarding:
    """Up to 3 destinations, none of them the address itself or repeated (L4409); all
    blank = forwarding OFF.  A mailbox key may change its own forwarding (004).  The
    contract's contact address is told (SPEC §9): forwarding redirects someone's mail."""
    try:
        destinations = clean_destinations(body.destinations, scope.address.address)
    except RuleViolation as exc:
        raise rule_error(exc, "destinations") from None
    settings_repo.replace_forwarding(session, address=scope.address,
                                     destinations=destinations, keep_copy=body.keep_copy)
    stage_change_notice(session, settings=settings, contract=scope.contract,
                        action="settings.forwarding", address=scope.address.address,
                        now=clock.now())
    _save(session, scope, clock, "settings.forwarding",
          {"enabled": bool(destinations), "destinations": destinations,
           "keep_copy": body.keep_copy})
    # Exactly what was just committed: no query to read it back.
    return Forwarding(enabled=bool(destinations), destinations=destinations,
                      keep_copy=body.keep_copy)


# --- auto-reply (SPEC §6, L4525-4637) ---------------------------------------------------


def _auto_reply_of(session: SessionDep, row: Address) -> AutoReplySettings:
    reply = settings_repo.auto_reply(session, address_id=row.id)
    if reply is None:
        return AutoReplySettings()
    return AutoReplySettings(enabled=reply.enabled, special_senders=list(reply.special_senders),
                             special_message=reply.special_message,
                             default_message=reply.default_message)


@router.get("/auto-reply", response_model=AutoReplySettings)
def get_auto_reply(scope: AddressScopeDep, session: SessionDep) -> AutoReplySettings:
    return _auto_reply_of(session, scope.address)


@router.put("/auto-reply", response_model=AutoReplySettings)
def put_auto_reply(
    body: AutoReplySettings,
    scope: AddressScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> AutoReplySettings:
    """Special senders are complete addresses (NFKC, lower case, duplicates dropped).

    While enabled, a reply must be possible: special senders need the special message, and
    with neither message there would never be a reply, so both cases are refused (the
    manual's form always carries a message, L4598-4625).  While disabled the texts are kept
    as a draft.  An empty default message means "no reply to others" (SPEC §6).
    """
    try:
        clean = clean_settings(
            enabled=body.enabled, special_senders=body.special_senders,
            special_message=body.special_message, default_message=body.default_message,
            max_entries=settings.addresses.max_list_entries,
            max_length=settings.addresses.max_entry_length)
    except RuleViolation as exc:
        raise rule_error(exc, "auto_reply") from None
    senders, special, default = clean.special_senders, clean.special_message, clean.default_message
    settings_repo.set_auto_reply(session, address_id=scope.address.id, enabled=body.enabled,
                                 special_senders=senders, special_message=special,
                                 default_message=default)
    _save(session, scope, clock, "settings.auto_reply",
          {"enabled": body.enabled, "special_senders": len(senders),
           "special_message": bool(special), "default_message": bool(default)})
    return _auto_reply_of(session, scope.address)


# --- overseas send window (SPEC §7, L4639-4677) -----------------------------------------


@router.get("/overseas", response_model=OverseasSummary)
def get_overseas(
    scope: AddressAdminDep, settings: SettingsDep, clock: ClockDep
) -> OverseasSummary:
    return overseas_summary(scope.address.overseas_expires_at, clock.now(), settings.tz)


@router.put("/overseas", response_model=OverseasSummary)
def put_overseas(
    body: OverseasUpdate,
    scope: AddressAdminDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> OverseasSummary:
    """``enabled: true`` opens the window until now + ``window_days`` (7); ``false`` closes it.

    The portal's "click while ON turns it OFF" is a toggle on its side; this call is
    declarative, so ``enabled: true`` while the window is still open is a no-op that keeps
    the running week (a retried request must not silently move the end date) and writes
    nothing.  To restart the week, turn it OFF and ON again — ON after OFF (or after the
    window ran out by itself) always starts a fresh week from that moment.
    """
    now = clock.now()
    row = scope.address
    if body.enabled and window_open(row.overseas_expires_at, now):
        return overseas_summary(row.overseas_expires_at, now, settings.tz)  # week kept
    expires_at = expiry_after(body.enabled, expires_at=row.overseas_expires_at, now=now,
                              window_days=settings.overseas.window_days)
    settings_repo.set_overseas_expiry(session, address=row, expires_at=expires_at)
    _save(session, scope, clock, "settings.overseas",
          {"enabled": body.enabled,
           "expires_at": as_utc(expires_at).isoformat() if expires_at else None})
    return overseas_summary(expires_at, now, settings.tz)


# --- mailbox quota (SPEC §8) ------------------------------------------------------------


@router.get("/quota", response_model=QuotaOut)
def get_quota(scope: AddressScopeDep, settings: SettingsDep) -> QuotaOut:
    return QuotaOut(quota_bytes=scope.address.quota_bytes,
                    max_quota_bytes=settings.addresses.max_quota_bytes)


@router.put("/quota", response_model=QuotaOut)
def put_quota(
    body: QuotaUpdate,
    _operator: OperatorDep,
    scope: AddressScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> QuotaOut:
    """Operators raise (or lower) a mailbox's quota, up to the configured maximum (004 L474)."""
    limit = settings.addresses.max_quota_bytes
    try:
        check_quota(body.quota_bytes, limit=limit)
    except RuleViolation as exc:
        raise rule_error(exc, "quota_bytes") from None
    settings_repo.set_quota(session, address=scope.address, quota_bytes=body.quota_bytes)
    _save(session, scope, clock, "settings.quota", {"quota_bytes": body.quota_bytes})
    return QuotaOut(quota_bytes=scope.address.quota_bytes, max_quota_bytes=limit)
