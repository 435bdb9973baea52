"""POP passwords of an address (SPEC §1, L3939-4039): change with the current one, or
reissue a random one shown once; each audited and notified to the contact (SPEC §9)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from mailplane.api.changes import record_change
from mailplane.api.deps import (
    AddressScope,
    AddressScopeDep,
    ClockDep,
    HashingDep,
    SessionDep,
    SettingsDep,
)
from mailplane.api.errors import ApiError, invalid
from mailplane.api.schemas.addresses import PasswordChange, PasswordChanged, PasswordReissued
from mailplane.api.views import issued_password, local_date
from mailplane.api.web_session import keep_own_session
from mailplane.auth.passwords import generate_password, same_as_local_part
from mailplane.config.settings import Settings
from mailplane.storage import addresses_repo

router = APIRouter(prefix="/v1/contracts/{cn}/addresses", tags=["addresses"])


def _store_password(request: Request, session: Session, scope: AddressScope,
                    settings: Settings, password_hash: str, action: str,
                    now: datetime) -> None:
    """Save a new POP password hash, audited and notified (SPEC §9), in one transaction —
    only if the stored hash is still the one this request read: of concurrent changes one
    wins and the others get 409, instead of all being told their password is now valid.
    Every portal session signed in with the old password ends, except the one making the
    change (issue 20); open IMAP and POP3 sessions end within seconds, on every node
    (``address.password_*`` is in :data:`mailplane.delivery.changes.ENDS_SESSIONS`)."""
    if not addresses_repo.replace_password_hash(
            session, address=scope.address, expected_hash=scope.address.password_hash,
            password_hash=password_hash, now=now):
        session.rollback()
        raise ApiError(409, "password_changed_meanwhile",
                       "the password was changed by another request at the same time;"
                       " nothing was changed by this one", "current")
    keep_own_session(request, session, old_hash=scope.address.password_hash,
                     new_hash=password_hash)
    record_change(session, principal=scope.principal, settings=settings,
                  contract=scope.contract, action=action, now=now,
                  address=scope.address.address, affects_policy=False)


@router.post("/{address}/password", response_model=PasswordChanged)
def change_password(
    request: Request,
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
    if same_as_local_part(body.new, scope.address.local_part):
        raise invalid("new", "must not be the same as the part of the address before @")
    now = clock.now()
    _store_password(request, session, scope, settings, hashing.hash(body.new),
                    "address.password_change", now)
    return PasswordChanged(address=scope.address.address, changed_on=local_date(now, settings.tz))


@router.post("/{address}/password/reissue", response_model=PasswordReissued)
def reissue_password(
    request: Request,
    scope: AddressScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    hashing: HashingDep,
    clock: ClockDep,
) -> PasswordReissued:
    """Random password with its katakana reading, shown once (SPEC §1, L3974-4039)."""
    password = generate_password(settings.addresses.reissue_password_length)
    while same_as_local_part(password, scope.address.local_part):
        password = generate_password(settings.addresses.reissue_password_length)
    now = clock.now()
    _store_password(request, session, scope, settings, hashing.hash(password),
                    "address.password_reissue", now)
    issued = issued_password(password, now, settings.tz)
    return PasswordReissued(
        address=scope.address.address, pop_account=scope.address.pop_account,
        **issued.model_dump(),
    )
