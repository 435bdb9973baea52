"""Schemas of the customer's account around the settings (SPEC §9a): recovery, the
contract password, the contact address, 解約 and 料金明細."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from mailplane.api.schemas.common import StrictModel
from mailplane.api.schemas.contracts import Termination, _check_email

#: Bounds what a request may carry; the rules themselves answer with their own message.
_MAX_PASSWORD_INPUT = 256


class RecoveryStart(StrictModel):
    customer_number: str = Field(max_length=64)


class RecoveryStarted(BaseModel):
    """The same answer whether or not the customer number exists (SPEC §9a)."""

    sent: bool = True
    code_minutes: int


class RecoveryFinish(StrictModel):
    customer_number: str = Field(max_length=64)
    code: str = Field(max_length=64)
    new_password: str = Field(max_length=_MAX_PASSWORD_INPUT)


class PasswordSet(BaseModel):
    customer_number: str
    changed_on: str = Field(description="YYYY/MM/DD, local time")


class ContractPasswordChange(StrictModel):
    current: str = Field(max_length=_MAX_PASSWORD_INPUT)
    new: str = Field(max_length=_MAX_PASSWORD_INPUT)


class ContactChangeStart(StrictModel):
    contact_email: str = Field(max_length=254)

    _email = field_validator("contact_email")(_check_email)


class ContactCodeSent(BaseModel):
    sent_to: str
    expires_at: datetime
    code_minutes: int


class CodeIn(StrictModel):
    code: str = Field(max_length=64)


class ContactChecked(BaseModel):
    contact_email: str


class ContactChanged(BaseModel):
    contact_email: str
    changed_on: str


class TerminationOptions(BaseModel):
    """What the 解約 screen offers (003 Art.18): month ends at least ``notice_days``
    ahead; after it, ``data_days`` until the data is deleted and ``cooloff_days`` before
    the addresses may be registered again."""

    status: str
    notice_days: int
    dates: list[str] = Field(description="YYYY/MM/DD, earliest first")
    data_days: int
    cooloff_days: int
    termination: Termination | None = None


class TerminationRequest(StrictModel):
    last_day: str = Field(max_length=10, description="one of the offered YYYY/MM/DD")
    password: str | None = Field(default=None, max_length=_MAX_PASSWORD_INPUT,
                                 description="the contract password (not for operators)")


class BillingLine(BaseModel):
    address: str
    purchased_on: str
    ended_on: str | None
    monthly_yen: int
    purchased_in_month: bool


class BillingMonth(BaseModel):
    month: str = Field(description="YYYY/MM")
    current: bool
    total_yen: int
    lines: list[BillingLine]


class Billing(BaseModel):
    """料金明細 (004 L60-80, L474-485): the paid address slots billed each month."""

    customer_number: str
    included: int
    extra: int
    extra_monthly_yen: int
    monthly_total_yen: int
    months: list[BillingMonth]
