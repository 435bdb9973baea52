"""Per-address delivery settings (SPEC §5-§8, §11): forwarding, auto-reply, the overseas
window and the quota — one GET and one whole-replacing PUT each.  The filter settings
(virus, spam, deny and allow lists) are :mod:`mailplane.api.routes.address_filters`.

Who may call what (SPEC §10, 004 function table): a contract-level key changes everything; a
mailbox-scoped customer key changes only its own forwarding and auto-reply (403 elsewhere).
Every PUT is audited and bumps the policy revision in the same transaction
(:func:`record_change`), and answers with the values as stored — normalised and
deduplicated — so the portal shows exactly what the MX will apply.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

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
from mailplane.api.errors import rule_error
from mailplane.api.schemas.addresses import OverseasSummary
from mailplane.api.schemas.settings import (
    AutoReplySettings,
    Forwarding,
    ForwardingUpdate,
    OverseasUpdate,
    QuotaOut,
    QuotaUpdate,
)
from mailplane.api.views import overseas_summary
from mailplane.clock import as_utc
from mailplane.filters.auto_reply import clean_settings
from mailplane.filters.forwarding import (
    MAX_DESTINATIONS,
    clean_destinations,
    destination_domain,
    normalise_destination,
)
from mailplane.filters.overseas_window import expiry_after, window_open
from mailplane.mail.address import email_rule_violation
from mailplane.net.domain_lookup import DomainLookup
from mailplane.rules import RuleViolation
from mailplane.rules.quota import check_quota
from mailplane.storage import addresses_repo, settings_repo
from mailplane.storage.models import Address

router = APIRouter(prefix="/v1/contracts/{cn}/addresses/{address}", tags=["settings"])



def save_setting(
    session: SessionDep,
    scope: AddressScope,
    clock: ClockDep,
    action: str,
    detail: dict[str, object],
) -> None:
    """Record and commit a setting of ``scope``'s address (:func:`record_change`: audit,
    policy revision, the notice where the spec asks for one)."""
    record_change(session, principal=scope.principal, settings=scope.settings,
                  contract=scope.contract, action=action, now=clock.now(),
                  address=scope.address.address, detail=detail)


# --- forwarding (SPEC §5, L4396-4523) ---------------------------------------------------


def _in_base_domain(domain: str, base_domains: list[str]) -> bool:
    domain = domain.lower()
    return any(domain == base or domain.endswith("." + base) for base in base_domains)


def _domain_lookup(request: Request) -> DomainLookup:
    """The API's one lookup (its cache is shared by every request of the process)."""
    lookup: DomainLookup | None = getattr(request.app.state, "domain_lookup", None)
    if lookup is None:
        settings = request.app.state.settings
        lookup = DomainLookup(settings.outbound.nameserver(),
                              timeout=settings.forwarding.dns_timeout_seconds)
        request.app.state.domain_lookup = lookup
    return lookup


async def missing_destination_domains(request: Request,
                                      settings: SettingsDep) -> frozenset[str]:
    """Remote destination domains of the request that DNS says do not exist (issue 20).

    Asked on the event loop, asynchronously, *before* the request takes a database turn
    (declared before the scope): a slow resolver holds no session and no thread.  Only
    the first destinations are looked at (more are refused anyway); a body that is not
    what the schema wants is left to its validation."""
    if not settings.forwarding.check_destination_domains:
        return frozenset()
    try:
        data = await request.json()
    except ValueError:
        return frozenset()
    raw = data.get("destinations") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return frozenset()
    domains = {destination_domain(item) for item in raw[:MAX_DESTINATIONS]
               if isinstance(item, str) and not email_rule_violation(normalise_destination(item))}
    remote = {d for d in domains if d and not _in_base_domain(d, settings.base_domains)}
    if not remote:
        return frozenset()
    return frozenset(await _domain_lookup(request).missing_domains(remote))


MissingDomainsDep = Annotated[frozenset[str], Depends(missing_destination_domains)]


def _forwarding_of(session: SessionDep, row: Address) -> Forwarding:
    destinations = settings_repo.forward_destinations(session, address_id=row.id)
    return Forwarding(enabled=bool(destinations), destinations=destinations,
                      keep_copy=row.forward_keep_copy)


@router.get("/forwarding", response_model=Forwarding)
def get_forwarding(scope: AddressScopeDep, session: SessionDep) -> Forwarding:
    return _forwarding_of(session, scope.address)


@router.put("/forwarding", response_model=Forwarding)
def put_forwarding(
    body: ForwardingUpdate, missing_domains: MissingDomainsDep, scope: AddressScopeDep,
    session: SessionDep, clock: ClockDep, settings: SettingsDep,
) -> Forwarding:
    """Up to 3 destinations, none of them the address itself or repeated (L4409); all
    blank = forwarding OFF.  A destination on the platform must be a registered address;
    one elsewhere must be in a domain that exists (when DNS can tell; issue 20).  A
    mailbox key may change its own forwarding (004).  The contract's contact address is
    told (SPEC §9): forwarding redirects someone's mail."""
    try:
        destinations = clean_destinations(
            body.destinations, scope.address.address,
            hosted=lambda domain: _in_base_domain(domain, settings.base_domains),
            hosted_exists=lambda address: addresses_repo.find(
                session, address=address) is not None,
            missing_domains=missing_domains)
    except RuleViolation as exc:
        raise rule_error(exc, "destinations") from None
    settings_repo.replace_forwarding(session, address=scope.address,
                                     destinations=destinations, keep_copy=body.keep_copy)
    save_setting(session, scope, clock, "settings.forwarding",
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
    save_setting(session, scope, clock, "settings.auto_reply",
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
    save_setting(session, scope, clock, "settings.overseas",
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
    save_setting(session, scope, clock, "settings.quota", {"quota_bytes": body.quota_bytes})
    return QuotaOut(quota_bytes=scope.address.quota_bytes, max_quota_bytes=limit)
