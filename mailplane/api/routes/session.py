"""Portal sign-in and sign-out (SPEC §10, 004 "マイページ ログイン"), and the operator's
contract password call.

``POST /v1/session`` signs a contract holder (customer number + contract password) or a
mailbox user (address or POP account + POP password) in; failures are throttled by the
shared login guard (as POP3).  ``GET /v1/session`` tells the page who is signed in and gives
the CSRF token; it answers 200 either way, so a signed-out page load is not an error.
``DELETE /v1/session`` ends the session on the server.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from mailplane.api.changes import record_change
from mailplane.api.deps import (
    ClockDep,
    ContractDep,
    HashingDep,
    OperatorDep,
    SessionDep,
    SettingsDep,
)
from mailplane.api.errors import ApiError, invalid
from mailplane.api.language import SESSION_COOKIE
from mailplane.api.schemas.addresses import ReadingChar
from mailplane.api.schemas.session import ContractPasswordIssued, SessionOut, SignIn
from mailplane.api.views import local_date
from mailplane.api.web_session import (
    LiveSession,
    check_csrf,
    clear_cookie,
    csrf_token,
    current_session,
    id_hash,
    idle_limit,
    new_token,
    set_cookie,
)
from mailplane.auth.passwords import reading_of, reading_text
from mailplane.auth.portal_login import LoginOutcome, PortalLogin, issue_contract_password
from mailplane.clock import as_utc
from mailplane.config.settings import Settings
from mailplane.i18n import N_
from mailplane.storage import web_sessions_repo

router = APIRouter(prefix="/v1/session", tags=["portal session"])
password_router = APIRouter(prefix="/v1/contracts/{cn}/password", tags=["contracts"])


def _typable_password(password: str) -> bool:
    """Printable ASCII only: a full-width password (an IME left on) can never be right."""
    return password.isascii() and password.isprintable()


def _out(live: LiveSession, settings: Settings) -> SessionOut:
    row = live.row
    return SessionOut(
        signed_in=True, role="mailbox" if row.address_id else "contract",
        contract=row.customer_number, address=row.address, csrf_token=csrf_token(live.token),
        idle_minutes=settings.portal.session_idle_minutes, expires_at=as_utc(row.expires_at),
    )


@router.get("", response_model=SessionOut)
async def who_is_signed_in(request: Request, response: Response,
                           settings: SettingsDep) -> SessionOut:
    try:
        live = await current_session(request)
    except ApiError:
        clear_cookie(response)
        return SessionOut(signed_in=False, expired=True)
    if live is None:
        return SessionOut(signed_in=False)
    return _out(live, settings)


@router.post("", response_model=SessionOut)
async def sign_in(body: SignIn, request: Request, response: Response, settings: SettingsDep,
                  clock: ClockDep) -> SessionOut:
    if (body.customer_number is None) == (body.address is None):
        raise invalid("customer_number", "enter either the customer number or the mail address")
    if not _typable_password(body.password):
        # Never a password (they are half-width, SPEC §1): told, not counted as a failure.
        raise invalid("password", "enter the password in half-width letters, digits and"
                                  " symbols (turn the Japanese input off)")
    login: PortalLogin = request.app.state.portal_login
    peer_ip = request.client.host if request.client else "unknown"
    if body.customer_number is not None:
        result = await login.contract(body.customer_number, body.password, peer_ip=peer_ip)
        field = "customer_number"
        wrong = N_("the customer number or the password is not correct")
    else:
        assert body.address is not None
        result = await login.mailbox(body.address, body.password, peer_ip=peer_ip)
        field = "address"
        wrong = N_("the mail address or the password is not correct")
    if result.outcome is LoginOutcome.LOCKED:
        retry = 60
        if result.locked_until is not None:
            retry = max(1, int((as_utc(result.locked_until) - clock.now()).total_seconds()))
        raise ApiError(429, "locked",
                       "too many failed sign-ins; try again in {minutes} minutes", field,
                       headers={"Retry-After": str(retry)}, minutes=max(1, (retry + 59) // 60))
    if result.outcome is LoginOutcome.SUSPENDED and body.customer_number is not None:
        raise ApiError(403, "contract_terminated",
                       "this contract has been terminated; My Page can no longer be used",
                       field)
    if result.outcome is LoginOutcome.SUSPENDED:
        raise ApiError(403, "address_suspended",
                       "this mail address is suspended; ask the contract holder", field)
    if result.outcome is LoginOutcome.UNAVAILABLE:
        raise ApiError(503, "unavailable", "database unavailable, retry shortly",
                       headers={"Retry-After": "5"})
    if result.outcome is not LoginOutcome.OK or result.contract_id is None:
        raise ApiError(401, "sign_in_failed", wrong, field)
    old = request.cookies.get(SESSION_COOKIE)
    token = new_token()
    now = clock.now()
    expires_at = now + timedelta(hours=settings.portal.session_absolute_hours)

    def store(factory_session: Session) -> web_sessions_repo.SessionRow | None:
        # A fresh id at every sign-in (no fixation); the old session, if any, ends.
        if old:
            web_sessions_repo.end(factory_session, id_hash=id_hash(old))
        web_sessions_repo.purge_expired(factory_session, now=now,
                                        idle_before=now - idle_limit(settings))
        web_sessions_repo.create(factory_session, id_hash=id_hash(token),
                                 contract_id=result.contract_id or 0,
                                 address_id=result.address_id, now=now, expires_at=expires_at,
                                 contract_stamp=result.contract_stamp,
                                 address_stamp=result.address_stamp)
        factory_session.commit()
        return web_sessions_repo.get(factory_session, id_hash=id_hash(token))

    def run() -> web_sessions_repo.SessionRow | None:
        with request.app.state.session_factory() as factory_session:
            return store(factory_session)

    row = await run_in_threadpool(run)
    if row is None:  # the contract or address was deleted meanwhile
        raise ApiError(401, "sign_in_failed", wrong, field)
    set_cookie(response, request, token, settings)
    return _out(LiveSession(row, token), settings)


@router.delete("", status_code=204)
async def sign_out(request: Request) -> Response:
    """Ends the session on the server (the cookie alone would be forgotten only by this
    browser).  Needs the CSRF token like any other change."""
    response = Response(status_code=204)
    try:
        live = await current_session(request)
    except ApiError:
        live = None
    if live is not None:
        check_csrf(request, live)

        def end() -> None:
            with request.app.state.session_factory() as session:
                web_sessions_repo.end(session, id_hash=live.row.id_hash)
                session.commit()

        await run_in_threadpool(end)
    clear_cookie(response)
    return response


@password_router.post("", status_code=201, response_model=ContractPasswordIssued)
def set_contract_password(
    contract: ContractDep,
    principal: OperatorDep,
    session: SessionDep,
    settings: SettingsDep,
    hashing: HashingDep,
    clock: ClockDep,
) -> ContractPasswordIssued:
    """A new random contract password for the customer's portal sign-in, shown once (also
    ``mailplane set-contract-password CN``).  Every contract-level session ends."""
    now = clock.now()
    password = issue_contract_password(session, hashing, contract_id=contract.id, now=now,
                                       length=settings.addresses.reissue_password_length)
    record_change(session, principal=principal, settings=settings, contract=contract,
                  action="contract.password_set", now=now, affects_policy=False)
    return ContractPasswordIssued(
        customer_number=contract.customer_number, password=password,
        reading=[ReadingChar.model_validate(item) for item in reading_of(password)],
        reading_text=reading_text(password), changed_on=local_date(now, settings.tz),
    )
