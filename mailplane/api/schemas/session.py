"""Portal sign-in schemas (SPEC §10)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from mailplane.api.schemas.addresses import ReadingChar
from mailplane.api.schemas.common import StrictModel
from mailplane.mail.address import typed_address
from mailplane.rules.account import typed_customer_number


class SignIn(StrictModel):
    """Either ``customer_number`` (contract holder) or ``address`` (mailbox user: the mail
    address or POP account), with its password."""

    customer_number: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=320)
    password: str = Field(max_length=128)

    # As people type them (issue 22): a full-width customer number or address is the
    # customer's, not a failed sign-in counted toward a lock.  The password is never folded.
    @field_validator("customer_number")
    @classmethod
    def _typed_number(cls, value: str | None) -> str | None:
        return None if value is None else typed_customer_number(value)

    @field_validator("address")
    @classmethod
    def _typed_address(cls, value: str | None) -> str | None:
        return None if value is None else typed_address(value)


class SessionOut(BaseModel):
    signed_in: bool
    #: Why there is no session: the cookie's session had ended (idle or absolute timeout).
    expired: bool = False
    role: Literal["contract", "mailbox"] | None = None
    contract: str | None = None
    address: str | None = None
    csrf_token: str | None = Field(default=None,
                                   description="send as X-CSRF-Token on every change")
    idle_minutes: int | None = None
    expires_at: datetime | None = None


class ContractPasswordIssued(BaseModel):
    """A new contract password, shown once."""

    customer_number: str
    password: str
    reading: list[ReadingChar]
    reading_text: str
    changed_on: str
