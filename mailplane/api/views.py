"""ORM rows → API schemas.  Never copies a hash into a response."""

from __future__ import annotations

from datetime import datetime, timedelta
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
from mailplane.api.schemas.contracts import Charges, ContractOut, Quota, Termination
from mailplane.auth.passwords import reading_of, reading_text
from mailplane.clock import as_utc
from mailplane.config.settings import Settings
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


def charges(contract: Contract | ContractSlots, used: int, charge_yen: int) -> Charges:
    """SPEC §9a: the monthly charge of the paid slots held now, and what one more address
    would add — shown before the customer confirms a registration."""
    contracted = contract.included_addresses + contract.extra_slots
    return Charges(extra_monthly_yen=charge_yen,
                   monthly_total_yen=contract.extra_slots * charge_yen,
                   next_address_yen=0 if used < contracted else charge_yen)


def charge_notes(charge_yen: int, extra_slots: int) -> tuple[tuple[str, str], ...]:
    """The lines the registration notice of a paid address adds (004 L474-485)."""
    return (
        (f"追加料金: 月額{charge_yen:,}円(税込)。購入月の翌月からご請求します (日割りなし)",
         f"Additional charge: {charge_yen:,} yen a month (tax included), billed from the"
         " month after the purchase (no proration)"),
        (f"追加メールアドレスの月額合計: {extra_slots * charge_yen:,}円 ({extra_slots}個)",
         f"Additional addresses in total: {extra_slots * charge_yen:,} yen a month"
         f" ({extra_slots})"),
    )


def termination(contract: Contract, settings: Settings) -> Termination | None:
    """The 解約 of ``contract``, requested or done, or None."""
    if contract.terminated_at is not None:
        ended = as_utc(contract.terminated_at)
        return Termination(
            terminated_at=ended,
            purge_at=ended + timedelta(days=settings.account.terminated_data_days))
    if contract.termination_effective_at is None:
        return None
    effective = as_utc(contract.termination_effective_at)
    return Termination(
        requested_at=as_utc(contract.termination_requested_at)
        if contract.termination_requested_at else None,
        last_day=local_date(effective - timedelta(seconds=1), settings.tz),
        effective_at=effective)


def contract_out(contract: Contract, used: int, settings: Settings | None = None) -> ContractOut:
    return ContractOut(
        customer_number=contract.customer_number,
        contact_email=contract.contact_email,
        status=contract.status,
        created_at=as_utc(contract.created_at),
        quota=quota(contract, used),
        charges=charges(contract, used, settings.addresses.extra_monthly_charge_yen)
        if settings else None,
        termination=termination(contract, settings) if settings else None,
    )


def issued_password(password: str, changed_at: datetime, tz: ZoneInfo) -> IssuedPassword:
    return IssuedPassword(
        password=password,
        reading=[ReadingChar.model_validate(item) for item in reading_of(password)],
        reading_text=reading_text(password),
        changed_on=local_date(changed_at, tz),
    )
