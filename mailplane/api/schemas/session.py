"""Portal sign-in schemas (SPEC §10)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from mailplane.api.schemas.addresses import ReadingChar
from mailplane.api.schemas.common import StrictModel


class SignIn(StrictModel):
    """Either ``customer_number`` (contract holder) or ``address`` (mailbox user: the mail
    address or POP account), with its password."""

    customer_number: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=320)
    password: str = Field(max_length=128)


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
