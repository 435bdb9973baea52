"""ORM rows → API schemas.  Never copies a hash into a response."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from mailplane.api.schemas.addresses import (
    AddressRow,
    ForwardingSummary,
    IssuedPassword,
    MailboxUsage,
    OverseasSummary,
    ReadingChar,
    SpamSummary,
)
from mailplane.api.schemas.contracts import ContractOut, Quota
from mailplane.auth.passwords import reading_of, reading_text
from mailplane.clock import as_utc
from mailplane.filters.overseas_window import window_open
from mailplane.policy.model import effective_status
from mailplane.storage.addresses_repo import AddressSummary
from mailplane.storage.contracts_repo import ContractSlots
from mailplane.storage.models import Contract


def local_date(moment: datetime, tz: ZoneInfo) -> str:
    """``YYYY/MM/DD`` as the manual prints dates, in the configured zone (SPEC §7, §9)."""
    return as_utc(moment).astimezone(tz).strftime("%Y/%m/%d")


def overseas_summary(expires_at: datetime | None, now: datetime, tz: ZoneInfo) -> OverseasSummary:
    """ON only while the window is open; it returns to OFF by itself (SPEC §7)."""
    if expires_at is None or not window_open(expires_at, now):
        return OverseasSummary(enabled=False, expires_at=None, display="OFF")
    expires = as_utc(expires_at)
    return OverseasSummary(
        enabled=True, expires_at=expires, display=f"ON until {local_date(expires, tz)}"
    )


def address_row(row: AddressSummary, now: datetime, tz: ZoneInfo, *,
                contract_status: str = "active", used_bytes: int | None = None) -> AddressRow:
    """``status`` as the mail services apply it: suspended with its contract too;
    ``mailbox`` usage when the caller measured it."""
    destinations = list(row.forward_destinations)
    return AddressRow(
        address=row.address,
        pop_account=row.pop_account,
        status=effective_status(row.status, contract_status),
        virus_check=row.virus_check,
        spam=SpamSummary(
            judge=row.spam_judge, quarantine=row.spam_quarantine, notify=row.spam_notify
        ),
        forwarding=ForwardingSummary(
            enabled=bool(destinations), destinations=destinations, keep_copy=row.forward_keep_copy
        ),
        overseas=overseas_summary(row.overseas_expires_at, now, tz),
        auto_reply_enabled=row.auto_reply_enabled,
        created_at=as_utc(row.created_at),
        mailbox=None if used_bytes is None else MailboxUsage(used_bytes=used_bytes,
                                                            quota_bytes=row.quota_bytes),
    )


def quota(contract: Contract | ContractSlots, used: int) -> Quota:
    return Quota(
        contracted=contract.included_addresses + contract.extra_slots,
        used=used,
        included=contract.included_addresses,
        extra=contract.extra_slots,
    )


def contract_out(contract: Contract, used: int) -> ContractOut:
    return ContractOut(
        customer_number=contract.customer_number,
        contact_email=contract.contact_email,
        status=contract.status,
        created_at=as_utc(contract.created_at),
        quota=quota(contract, used),
    )


def issued_password(password: str, changed_at: datetime, tz: ZoneInfo) -> IssuedPassword:
    return IssuedPassword(
        password=password,
        reading=[ReadingChar.model_validate(item) for item in reading_of(password)],
        reading_text=reading_text(password),
        changed_on=local_date(changed_at, tz),
    )
