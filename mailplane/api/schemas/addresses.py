"""Address schemas: creation, the settings-table row (SPEC §2), passwords (SPEC §1)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from mailplane.api.schemas.common import StrictModel
from mailplane.api.schemas.contracts import Charges
from mailplane.auth.passwords import password_rule_violation
from mailplane.rules.registration import local_part_violation


def check_local_part(value: str) -> str:
    problem = local_part_violation(value)
    if problem:
        raise ValueError(problem)
    return value


class AddressCreate(StrictModel):
    local_part: str = Field(description="3-20 characters: a-z 0-9 - _, not first or last")
    subdomain: str = Field(description="one of the subdomain candidates, e.g. e06")
    base_domain: str | None = Field(default=None, description="default: first configured")
    virus_check: bool = True
    accept_terms: bool = False
    accept_charge: bool = False

    _local = field_validator("local_part")(check_local_part)


class AddressUpdate(StrictModel):
    """Operator changes to one address."""

    status: Literal["active", "suspended"] | None = Field(
        default=None, description="suspended: POP3 and submission logins refused, mail kept")


class ReadingChar(BaseModel):
    char: str
    reading: str
    upper: bool


class IssuedPassword(BaseModel):
    """A generated password, shown once (SPEC §1 L3913-3915, L3974-4039)."""

    password: str
    reading: list[ReadingChar]
    reading_text: str
    changed_on: str = Field(description="YYYY/MM/DD in the configured time zone")


class SpamSummary(BaseModel):
    judge: bool
    quarantine: bool
    notify: bool


class ForwardingSummary(BaseModel):
    enabled: bool
    destinations: list[str]
    keep_copy: bool


class OverseasSummary(BaseModel):
    enabled: bool
    expires_at: datetime | None
    display: str = Field(description='"ON until YYYY/MM/DD" or "OFF"')


class MailboxUsage(BaseModel):
    """How full the mailbox is (SPEC §8): the portal's quota bar."""

    used_bytes: int
    quota_bytes: int


class AddressRow(BaseModel):
    """One row of the manual's settings table (L3922-3934), plus auto-reply and usage."""

    address: str
    pop_account: str
    status: str
    virus_check: bool
    spam: SpamSummary
    forwarding: ForwardingSummary
    overseas: OverseasSummary
    auto_reply_enabled: bool
    created_at: datetime
    mailbox: MailboxUsage | None = Field(
        default=None, description="usage and quota; in the address list")


class AddressCreated(BaseModel):
    address: AddressRow
    pop_account: str
    initial_password: IssuedPassword | None = Field(
        description="shown once; null when an Idempotency-Key request is replayed"
    )
    quota: dict[str, int]
    charges: Charges | None = None


class AddressList(BaseModel):
    contract: str
    quota: dict[str, int]
    charges: Charges | None = None
    addresses: list[AddressRow]


class SubdomainCandidate(BaseModel):
    subdomain: str
    address: str


class SubdomainCandidates(BaseModel):
    local_part: str
    base_domain: str
    page: int
    candidates: list[SubdomainCandidate]
    has_more: bool


class PasswordChange(StrictModel):
    current: str
    new: str

    @field_validator("new")
    @classmethod
    def _rules(cls, value: str) -> str:
        problem = password_rule_violation(value)
        if problem:
            raise ValueError(problem)
        return value


class PasswordChanged(BaseModel):
    address: str
    changed_on: str


class PasswordReissued(IssuedPassword):
    address: str
    pop_account: str
