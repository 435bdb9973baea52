"""The contract holder's own account (SPEC §9a; 004 function table: 契約情報の変更,
料金明細照会 — contract holders only, never a mailbox user):

- ``POST /v1/contracts/{cn}/password/change`` ``{current, new}``: the contract password,
  checked under the sign-in's login guard; the other portal sessions of the contract end;
- the contact address in the seed's four steps (000 L60-L200: 入力 → 認証コード → 確認 →
  完了): ``POST …/contact-email/verification`` ``{contact_email}`` mails a 6-digit code
  to the new address, ``POST …/contact-email/verification/check`` ``{code}`` checks it,
  ``PUT …/contact-email`` ``{code}`` makes the change — the old and the new address are
  told, and the change is audited;
- 解約 (003 Art.18): ``GET``/``POST``/``DELETE …/termination`` — the month ends offered,
  a request (with the contract password), its withdrawal before it takes effect;
- ``GET …/billing``: 料金明細, the paid address slots billed per month (004 L474-485).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from mailplane.api.changes import check_writable, record_change
from mailplane.api.codes import Codes
from mailplane.api.deps import (
    ClockDep,
    ContractAdminDep,
    HashingDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
)
from mailplane.api.errors import ApiError, invalid, not_found, rule_error
from mailplane.api.language import SESSION_COOKIE
from mailplane.api.routes.contracts import change_contact
from mailplane.api.schemas.account import (
    Billing,
    BillingLine,
    BillingMonth,
    CodeIn,
    ContactChanged,
    ContactChangeStart,
    ContactChecked,
    ContactCodeSent,
    ContractPasswordChange,
    PasswordSet,
    TerminationOptions,
    TerminationRequest,
)
from mailplane.api.schemas.contracts import ContractOut
from mailplane.api.throttle import Limit, take
from mailplane.api.views import contract_out, local_date, termination
from mailplane.api.web_session import id_hash, keep_own_session
from mailplane.auth.account_codes import CONTACT_DIGITS
from mailplane.auth.portal_login import LoginOutcome, PortalLogin
from mailplane.clock import as_utc
from mailplane.config.settings import Settings
from mailplane.notices.change import stage_code_mail
from mailplane.rules import RuleViolation
from mailplane.rules.account import (
    contract_password_violation,
    termination_dates,
    termination_moment,
)
from mailplane.rules.billing import month_of, months_back, statement
from mailplane.storage import billing_repo, contracts_repo, web_sessions_repo
from mailplane.storage.models import Contract

router = APIRouter(prefix="/v1/contracts/{cn}", tags=["account"])

CONTACT = "contact"
#: 料金明細 shows this many months, the current one included.
BILLING_MONTHS = 12


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _check_contract_password(request: Request, contract: Contract, password: str,
                                   field: str) -> None:
    """The contract password, checked like a sign-in (the same login guard: guessing it
    here counts as guessing it at sign-in).  422 on ``field`` when wrong."""
    login: PortalLogin = request.app.state.portal_login
    result = await login.contract(contract.customer_number, password, peer_ip=_peer(request))
    if result.outcome is LoginOutcome.LOCKED:
        raise ApiError(429, "locked", "too many failed sign-ins; try again in {minutes} minutes",
                       field, headers={"Retry-After": "900"}, minutes=15)
    if result.outcome is LoginOutcome.UNAVAILABLE:
        raise ApiError(503, "unavailable", "database unavailable, retry shortly",
                       headers={"Retry-After": "5"})
    if result.outcome is not LoginOutcome.OK:
        raise invalid(field, "the current password is not correct")


# --- the contract password ------------------------------------------------------------


@router.post("/password/change", response_model=PasswordSet)
async def change_contract_password(
    body: ContractPasswordChange, request: Request, contract: ContractAdminDep,
    principal: PrincipalDep, session: SessionDep, settings: SettingsDep,
    hashing: HashingDep, clock: ClockDep,
) -> PasswordSet:
    """Change needs the current password (like the POP password, SPEC §1).  The contract's
    other contract-level portal sessions end; the one that made the change stays."""
    check_writable(contract, principal)
    problem = contract_password_violation(body.new, customer_number=contract.customer_number)
    if problem:
        raise rule_error(RuleViolation("new", problem), "new")
    if body.new == body.current:
        raise invalid("new", "must differ from the current password")
    await _check_contract_password(request, contract, body.current, "current")
    password_hash = await run_in_threadpool(hashing.hash, body.new)
    old_hash = contract.password_hash
    cookie = request.cookies.get(SESSION_COOKIE)
    now = clock.now()

    def write() -> None:
        web_sessions_repo.set_contract_password(session, contract_id=contract.id,
                                                password_hash=password_hash, now=now)
        # The session that made the change goes on under the new password's stamp.
        keep_own_session(request, session, old_hash=old_hash, new_hash=password_hash)
        web_sessions_repo.end_all_for_contract(session, contract_id=contract.id,
                                               keep=id_hash(cookie) if cookie else None)
        record_change(session, principal=principal, settings=settings, contract=contract,
                      action="contract.password_change", now=now, affects_policy=False)

    await run_in_threadpool(write)
    return PasswordSet(customer_number=contract.customer_number,
                       changed_on=local_date(now, settings.tz))


# --- the contact address: 入力 → 認証コード → 確認 → 完了 ---------------------------------


@router.post("/contact-email/verification", status_code=202, response_model=ContactCodeSent)
def start_contact_change(
    body: ContactChangeStart, request: Request, contract: ContractAdminDep,
    principal: PrincipalDep, session: SessionDep, settings: SettingsDep, clock: ClockDep,
) -> ContactCodeSent:
    """Step 1 (入力): a code to the new address proves it receives mail."""
    check_writable(contract, principal)
    if body.contact_email == contract.contact_email:
        raise invalid("contact_email", "this is already the contact address")
    now = clock.now()
    take(session, [Limit(f"contact-code:contract:{contract.id}",
                         settings.account.codes_per_account_per_hour)], now)
    codes: Codes = request.app.state.codes
    issued = codes.issue(session, contract_id=contract.id, purpose=CONTACT,
                         digits=CONTACT_DIGITS, now=now, new_value=body.contact_email)
    stage_code_mail(session, settings=settings, purpose=CONTACT,
                    customer_number=contract.customer_number, to=body.contact_email,
                    code=issued.code, now=now, expires_at=issued.expires_at)
    record_change(session, principal=principal, settings=settings, contract=contract,
                  action="contract.contact_code", now=now, affects_policy=False,
                  detail={"to": body.contact_email})
    return ContactCodeSent(sent_to=body.contact_email, expires_at=issued.expires_at,
                           code_minutes=settings.account.code_minutes)


@router.post("/contact-email/verification/check", response_model=ContactChecked)
def check_contact_code(
    body: CodeIn, request: Request, contract: ContractAdminDep, principal: PrincipalDep,
    session: SessionDep, clock: ClockDep,
) -> ContactChecked:
    """Step 2 (認証コード入力): the code is right; nothing changes yet (step 3 confirms)."""
    check_writable(contract, principal)
    codes: Codes = request.app.state.codes
    live = codes.check(session, contract_id=contract.id, purpose=CONTACT, typed=body.code,
                       now=clock.now())
    if live is None or not live.new_value:
        raise _invalid_code()
    return ContactChecked(contact_email=live.new_value)


@router.put("/contact-email", response_model=ContactChanged)
def confirm_contact_change(
    body: CodeIn, request: Request, contract: ContractAdminDep, principal: PrincipalDep,
    session: SessionDep, settings: SettingsDep, clock: ClockDep,
) -> ContactChanged:
    """Step 3 (確認 → 登録): the change, once per code; both addresses are told."""
    check_writable(contract, principal)
    now = clock.now()
    codes: Codes = request.app.state.codes
    live = codes.check(session, contract_id=contract.id, purpose=CONTACT, typed=body.code,
                       now=now)
    if live is None or not live.new_value:
        raise _invalid_code()
    locked = contracts_repo.lock_for_update(session, contract_id=contract.id)
    if locked is None:
        raise not_found("contract not found")
    if not codes.use(session, live, now):
        session.rollback()
        raise _invalid_code()
    change_contact(session, principal=principal, settings=settings, contract=locked,
                   new=live.new_value, now=now)
    session.commit()
    return ContactChanged(contact_email=live.new_value, changed_on=local_date(now, settings.tz))


def _invalid_code() -> ApiError:
    return ApiError(422, "invalid_code",
                    "the code is not correct or is no longer valid; request a new code", "code")


# --- 解約 (003 Art.18) ----------------------------------------------------------------------


def _today(settings: Settings, now: datetime) -> date:
    return as_utc(now).astimezone(settings.tz).date()


def _offered(settings: Settings, now: datetime, choices: int = 3) -> list[date]:
    return termination_dates(_today(settings, now),
                             notice_days=settings.account.termination_notice_days,
                             choices=choices)


@router.get("/termination", response_model=TerminationOptions)
def termination_options(contract: ContractAdminDep, settings: SettingsDep,
                        clock: ClockDep) -> TerminationOptions:
    return TerminationOptions(
        status=contract.status, notice_days=settings.account.termination_notice_days,
        dates=[day.strftime("%Y/%m/%d") for day in _offered(settings, clock.now())],
        data_days=settings.account.terminated_data_days,
        cooloff_days=settings.addresses.deleted_cooloff_days,
        termination=termination(contract, settings))


def _parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip().replace("/", "-"))
    except ValueError:
        return None


@router.post("/termination", status_code=201, response_model=ContractOut)
async def request_termination(
    body: TerminationRequest, request: Request, contract: ContractAdminDep,
    principal: PrincipalDep, session: SessionDep, settings: SettingsDep, clock: ClockDep,
) -> ContractOut:
    """A 解約 at the end of a month (003 Art.18): one of the offered month ends.  The
    contract password confirms it (it cannot be taken back once it took effect); the
    operator, who ends contracts with ``PATCH``, needs none."""
    check_writable(contract, principal)
    if contract.termination_effective_at is not None:
        raise ApiError(409, "termination_requested",
                       "a termination is already requested; withdraw it first", "last_day")
    now = clock.now()
    day = _parse_day(body.last_day)
    if day is None or day not in _offered(settings, now, choices=12):
        raise invalid("last_day", "choose one of the offered dates")
    if principal.role != "operator":
        await _check_contract_password(request, contract, body.password or "", "password")

    def write() -> ContractOut:
        effective = termination_moment(day, settings.tz)
        if not contracts_repo.request_termination(session, contract_id=contract.id,
                                                  effective_at=effective, now=now):
            raise ApiError(409, "contract_not_active", "the contract is not active")
        purge_on = (day + timedelta(days=settings.account.terminated_data_days + 1))
        record_change(
            session, principal=principal, settings=settings, contract=contract,
            action="contract.termination_request", now=now, affects_policy=False,
            detail={"last_day": day.isoformat()},
            notes=((f"解約日: {day:%Y/%m/%d}", f"Last day: {day:%Y/%m/%d}"),
                   (f"メール・設定の削除予定日: {purge_on:%Y/%m/%d}",
                    f"Mail and settings will be deleted on: {purge_on:%Y/%m/%d}"),
                   ("解約日まではマイページから取り消せます",
                    "Until then you can withdraw it on My Page")))
        session.refresh(contract)
        return contract_out(contract, contracts_repo.count_addresses(
            session, contract_id=contract.id), settings)

    return await run_in_threadpool(write)


@router.delete("/termination", status_code=204)
def withdraw_termination(contract: ContractAdminDep, principal: PrincipalDep,
                         session: SessionDep, settings: SettingsDep,
                         clock: ClockDep) -> Response:
    check_writable(contract, principal)
    if not contracts_repo.cancel_termination(session, contract_id=contract.id):
        raise not_found("no termination is requested")
    record_change(session, principal=principal, settings=settings, contract=contract,
                  action="contract.termination_cancel", now=clock.now(), affects_policy=False)
    return Response(status_code=204)


# --- 料金明細 (004 L474-485) ----------------------------------------------------------------


@router.get("/billing", response_model=Billing)
def billing(contract: ContractAdminDep, session: SessionDep, settings: SettingsDep,
            clock: ClockDep) -> Billing:
    """The last :data:`BILLING_MONTHS` months since the contract began, newest first; the
    current one is not final (a slot bought or given up this month changes it)."""
    tz = settings.tz
    now = clock.now()
    last = month_of(now, tz)
    first = max(months_back(last, BILLING_MONTHS - 1), month_of(contract.created_at, tz))
    since = datetime(first[0], first[1], 1, tzinfo=tz).astimezone(UTC)
    purchases = billing_repo.for_contract(session, contract_id=contract.id, ended_since=since)
    months = statement(purchases, first=first, last=last, tz=tz)
    charge = settings.addresses.extra_monthly_charge_yen
    return Billing(
        customer_number=contract.customer_number, included=contract.included_addresses,
        extra=contract.extra_slots, extra_monthly_yen=charge,
        monthly_total_yen=sum(p.monthly_yen for p in purchases if p.ended_at is None),
        months=[BillingMonth(
            month=f"{year:04d}/{number:02d}", current=(year, number) == last,
            total_yen=item.total_yen,
            lines=[BillingLine(
                address=line.address, purchased_on=local_date(line.purchased_at, tz),
                ended_on=local_date(line.ended_at, tz) if line.ended_at else None,
                monthly_yen=line.monthly_yen,
                purchased_in_month=month_of(line.purchased_at, tz) == (year, number),
            ) for line in item.lines],
        ) for item in months for (year, number) in [item.month]],
    )

