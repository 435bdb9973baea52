"""Rules of the customer's account around the settings (SPEC §9a): the contract password a
customer chooses, one-time codes as people type them, and when a 解約 may take effect.

- **Contract password** (004 "お客様番号パスワード"; NIST SP 800-63B §5.1.1.2): 8-64
  printable ASCII characters, not the customer number.  Longer input is refused with a
  message, never cut (issue 22: a pasted password silently truncated is a password the
  customer does not know).
- **Codes** are typed from a mail, often on a phone with a Japanese keyboard: full-width
  digits, spaces and hyphens are accepted (NFKC, then only the digits count).
- **解約** (003 Art.18): at the end of a month, requested ``notice_days`` days ahead; it
  takes effect at the start of the next day in the ISP's time zone.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mailplane.i18n import Text

CONTRACT_PASSWORD_MIN = 8
CONTRACT_PASSWORD_MAX = 64
#: How many month ends a customer may choose among for a 解約.
TERMINATION_CHOICES = 3


def contract_password_violation(password: str, *, customer_number: str) -> Text | None:
    """The first contract password rule ``password`` breaks, or None."""
    if not CONTRACT_PASSWORD_MIN <= len(password) <= CONTRACT_PASSWORD_MAX:
        return Text("must be {min}-{max} characters", min=CONTRACT_PASSWORD_MIN,
                    max=CONTRACT_PASSWORD_MAX)
    if not all("!" <= ch <= "~" for ch in password):
        return Text("may contain only half-width letters, digits and symbols (no spaces)")
    if password.lower() == customer_number.lower():
        return Text("must not be the same as the customer number")
    if len(set(password)) == 1:
        return Text("must not repeat one character only")
    return None


def normalise_code(typed: str, *, max_length: int = 64) -> str:
    """The digits of a code as typed (全角 digits, spaces and hyphens allowed); "" when the
    input is not a code at all.  Bounded, so a huge field costs nothing."""
    if len(typed) > max_length:
        return ""
    folded = unicodedata.normalize("NFKC", typed)
    kept = "".join(ch for ch in folded if ch not in " -\t")
    return kept if kept.isascii() and kept.isdigit() else ""


def _month_end(year: int, month: int) -> date:
    first_of_next = date(year + month // 12, month % 12 + 1, 1)
    return first_of_next - timedelta(days=1)


def termination_dates(today: date, *, notice_days: int,
                      choices: int = TERMINATION_CHOICES) -> list[date]:
    """The month ends a 解約 requested on ``today`` may take effect on, earliest first:
    this month's end if it is at least ``notice_days`` days away, else next month's."""
    end = _month_end(today.year, today.month)
    if (end - today).days < notice_days:
        end = _month_end(end.year + end.month // 12, end.month % 12 + 1)
    dates = [end]
    while len(dates) < choices:
        last = dates[-1]
        dates.append(_month_end(last.year + last.month // 12, last.month % 12 + 1))
    return dates


def termination_moment(last_day: date, tz: ZoneInfo) -> datetime:
    """A 解約 on ``last_day`` ends the service when that day ends (local time); in UTC,
    as every stored moment is."""
    return datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
