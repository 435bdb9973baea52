"""Contract schemas (SPEC §1, §11)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from mailplane.api.schemas.common import StrictModel
from mailplane.mail.address import email_rule_violation

CUSTOMER_NUMBER_PATTERN = r"^[A-Za-z0-9-]{1,32}$"


def _check_email(value: str) -> str:
    problem = email_rule_violation(value)
    if problem:
        raise ValueError(problem)
    return value.lower()


class ContractCreate(StrictModel):
    customer_number: str = Field(
        pattern=CUSTOMER_NUMBER_PATTERN, description="1-32 characters: A-Z a-z 0-9 -"
    )
    contact_email: str
    included_addresses: int | None = Field(default=None, ge=0, le=1000)

    _email = field_validator("contact_email")(_check_email)


class ContractUpdate(StrictModel):
    """Operator only.  ``status`` ``terminated`` ends the contract at once (003 Art.19);
    ``active`` on a terminated contract restores it while its data is not yet purged."""

    status: Literal["active", "suspended", "terminated"] | None = None
    contact_email: str | None = None
    extra_slots: int | None = Field(default=None, ge=0, le=1000)

    @field_validator("contact_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else _check_email(value)


class Quota(BaseModel):
    """SPEC §1: ``contracted`` = included + paid slots; ``used`` = addresses in use."""

    contracted: int
    used: int
    included: int
    extra: int


class Charges(BaseModel):
    """What the paid slots cost (SPEC §9a; 004 L474-485): ``extra_monthly_yen`` per paid
    slot, ``monthly_total_yen`` for the slots held now, and ``next_address_yen`` — what
    registering one more address adds a month (0 while a contracted slot is free), so the
    price is shown before the customer confirms."""

    extra_monthly_yen: int
    monthly_total_yen: int
    next_address_yen: int


class Termination(BaseModel):
    """A 解約 (003 Art.18-19): requested for ``last_day`` (effective at ``effective_at``),
    or done at ``terminated_at``; ``purge_at``: when the data goes."""

    requested_at: datetime | None = None
    last_day: str | None = Field(default=None, description="YYYY/MM/DD, local time")
    effective_at: datetime | None = None
    terminated_at: datetime | None = None
    purge_at: datetime | None = None


class ContractOut(BaseModel):
    customer_number: str
    contact_email: str
    status: str
    created_at: datetime
    quota: Quota
    charges: Charges | None = None
    termination: Termination | None = None
