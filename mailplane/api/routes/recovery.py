"""「パスワードをお忘れの方」: a contract holder who forgot the contract password sets a new
one with a code mailed to the contract's contact address (SPEC §9a; 000 L69: the contact
address is where ID/password reissue mail goes).  The password itself is never mailed.

``POST /v1/recovery`` ``{customer_number}`` mails an 8-digit code, valid
``account.code_minutes`` and ``account.code_max_attempts`` tries;
``POST /v1/recovery/verify`` ``{customer_number, code, new_password}`` sets the password,
ends the contract's portal sessions and tells the contact address.

Against abuse (docs/security.md "Account recovery"):
- the first call answers the same 202 whether the number exists, is unknown, suspended or
  terminated — no mail goes out then — after the same work (count, look up, commit); the
  code and its mail are made after the answer has gone, and a wrong code answers the same
  422 whatever the reason;
- both calls are limited per client IP and per customer number as typed (known or not),
  429 + ``Retry-After`` over the limit;
- only the newest code works, once: of concurrent uses exactly one succeeds.
A mailbox user's POP password is not recovered here: the contract holder reissues it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from datetime import datetime

from fastapi import APIRouter, BackgroundTasks, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailplane.api.changes import record_change
from mailplane.api.codes import Codes
from mailplane.api.deps import ClockDep, HashingDep, SessionDep, SettingsDep
from mailplane.api.errors import ApiError, rule_error
from mailplane.api.schemas.account import (
    PasswordSet,
    RecoveryFinish,
    RecoveryStart,
    RecoveryStarted,
)
from mailplane.api.schemas.contracts import CUSTOMER_NUMBER_PATTERN
from mailplane.api.throttle import account_limit, ip_limit, take
from mailplane.api.views import local_date
from mailplane.auth.account_codes import RECOVERY_DIGITS
from mailplane.auth.api_keys import Principal
from mailplane.config.settings import Settings
from mailplane.notices.change import stage_code_mail
from mailplane.rules import RuleViolation
from mailplane.rules.account import contract_password_violation
from mailplane.storage import contracts_repo, web_sessions_repo
from mailplane.storage.models import Contract

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/recovery", tags=["portal session"])

#: Who the audit log names for a change made by whoever holds the code.
RECOVERY = Principal(key_id="recovery", role="anonymous")
PURPOSE = "recovery"


def typed_number(value: str) -> str:
    """The customer number as people type it: 全角 folded (NFKC), spaces trimmed."""
    return unicodedata.normalize("NFKC", value).strip()


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _recoverable(session: SessionDep, number: str) -> Contract | None:
    """The contract a recovery may act on: it exists and is active (a suspended or
    terminated contract is the operator's)."""
    if not re.fullmatch(CUSTOMER_NUMBER_PATTERN, number):
        return None
    contract = contracts_repo.get_by_number(session, customer_number=number)
    return contract if contract is not None and contract.status == "active" else None


@router.post("", status_code=202, response_model=RecoveryStarted)
def start_recovery(body: RecoveryStart, request: Request, background: BackgroundTasks,
                   session: SessionDep, settings: SettingsDep,
                   clock: ClockDep) -> RecoveryStarted:
    """Counted, looked up, answered — the same for every customer number.  The code and
    its mail are made after the answer has gone (:func:`_issue_code`), so neither the
    answer nor its timing differs for a number that exists."""
    now = clock.now()
    number = typed_number(body.customer_number)
    account = settings.account
    take(session, [ip_limit("recovery", _peer(request), account.recovery_requests_per_ip_per_hour),
                   account_limit("recovery", number, account.codes_per_account_per_hour)], now)
    contract = _recoverable(session, number)
    session.commit()
    if contract is not None:
        background.add_task(_issue_code, request.app.state.session_factory,
                            request.app.state.codes, settings, contract.id, _peer(request), now)
    return RecoveryStarted(code_minutes=account.code_minutes)


def _issue_code(factory: sessionmaker[Session], codes: Codes, settings: Settings,
                contract_id: int, peer: str, now: datetime) -> None:
    """The code, its mail to the contact address and the audit row, in one transaction
    (blocking; run by Starlette in a worker thread after the response)."""
    try:
        with factory() as session:
            contract = contracts_repo.get_by_id(session, contract_id=contract_id)
            if contract is None or contract.status != "active":
                return
            issued = codes.issue(session, contract_id=contract.id, purpose=PURPOSE,
                                 digits=RECOVERY_DIGITS, now=now)
            stage_code_mail(session, settings=settings, purpose=PURPOSE,
                            customer_number=contract.customer_number,
                            to=contract.contact_email, code=issued.code, now=now,
                            expires_at=issued.expires_at)
            record_change(session, principal=RECOVERY, settings=settings, contract=contract,
                          action="contract.recovery_code", now=now, affects_policy=False,
                          detail={"ip": peer})
    except SQLAlchemyError as exc:  # the customer asks again; nothing half-done stays
        log.warning("recovery code not issued: %s", type(exc).__name__)


@router.post("/verify", response_model=PasswordSet)
def finish_recovery(body: RecoveryFinish, request: Request, session: SessionDep,
                    settings: SettingsDep, hashing: HashingDep,
                    clock: ClockDep) -> PasswordSet:
    now = clock.now()
    number = typed_number(body.customer_number)
    account = settings.account
    take(session, [ip_limit("recovery-check", _peer(request), account.code_checks_per_ip_per_hour),
                   account_limit("recovery-check", number,
                                 account.code_checks_per_account_per_hour)], now)
    session.commit()
    problem = contract_password_violation(body.new_password, customer_number=number)
    if problem:
        raise rule_error(RuleViolation("new_password", problem), "new_password")
    wrong = ApiError(422, "invalid_code",
                     "the code is not correct or is no longer valid; request a new code",
                     "code")
    contract = _recoverable(session, number)
    codes: Codes = request.app.state.codes
    live = None if contract is None else codes.check(
        session, contract_id=contract.id, purpose=PURPOSE, typed=body.code, now=now)
    if contract is None or live is None:
        raise wrong
    session.commit()  # nothing slow inside a transaction: the hash comes next
    password_hash = hashing.hash(body.new_password)
    if not codes.use(session, live, now):
        session.rollback()
        raise wrong  # another request used it first
    web_sessions_repo.set_contract_password(session, contract_id=contract.id,
                                            password_hash=password_hash, now=now)
    web_sessions_repo.end_all_for_contract(session, contract_id=contract.id)
    record_change(session, principal=RECOVERY, settings=settings, contract=contract,
                  action="contract.password_recover", now=now, affects_policy=False,
                  detail={"ip": _peer(request)})
    return PasswordSet(customer_number=contract.customer_number,
                       changed_on=local_date(now, settings.tz))
