"""Billing of paid address slots, as the seed bills them (004 L474-485; SPEC §9a).

A contract includes ``addresses.included_per_contract`` addresses; each further one is a
paid slot of ``addresses.extra_monthly_charge_yen`` a month.  The seed's rules:

- "利用料金は購入翌月から発生いたします": a purchase is billed from the month after it;
- "解約時は、解約月の当月分の料金が発生いたします": the month a slot ends is billed;
- "同月内に、取得・解約・取得を繰り返された場合でも、メールサービス購入毎の費用が発生":
  each purchase is billed, even one bought and given up within a month (by the rule
  above, it is billed for that month);
- "日割り計算は行いません": whole months, no proration.

So a purchase is billed for every month from the one after its purchase to the one it
ended in, and at least for that one month when it ended in its own month.  Months are the
ISP's calendar months (``timezone``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

Month = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Purchase:
    address: str
    monthly_yen: int
    purchased_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class MonthCharges:
    month: Month
    lines: tuple[Purchase, ...]

    @property
    def total_yen(self) -> int:
        return sum(line.monthly_yen for line in self.lines)


def month_of(moment: datetime, tz: ZoneInfo) -> Month:
    local = moment.astimezone(tz)
    return local.year, local.month


def _next(month: Month) -> Month:
    year, number = month
    return (year + 1, 1) if number == 12 else (year, number + 1)


def _months(first: Month, last: Month) -> Iterator[Month]:
    month = first
    while month <= last:
        yield month
        month = _next(month)


def billed_months(purchase: Purchase, *, upto: Month, tz: ZoneInfo) -> list[Month]:
    """The months ``purchase`` is billed for, up to and including ``upto``."""
    bought = month_of(purchase.purchased_at, tz)
    if purchase.ended_at is None:
        return list(_months(_next(bought), upto))
    ended = month_of(purchase.ended_at, tz)
    if ended == bought:
        return [bought] if bought <= upto else []
    return list(_months(_next(bought), min(ended, upto)))


def statement(purchases: Iterable[Purchase], *, first: Month, last: Month,
              tz: ZoneInfo) -> list[MonthCharges]:
    """料金明細: the billed lines of each month from ``first`` to ``last``, newest first."""
    by_month: dict[Month, list[Purchase]] = {month: [] for month in _months(first, last)}
    for purchase in purchases:
        for month in billed_months(purchase, upto=last, tz=tz):
            if month in by_month:
                by_month[month].append(purchase)
    return [MonthCharges(month, tuple(sorted(lines, key=lambda p: p.purchased_at)))
            for month, lines in sorted(by_month.items(), reverse=True)]


def months_back(month: Month, count: int) -> Month:
    """The month ``count`` months before ``month``."""
    year, number = month
    index = year * 12 + (number - 1) - count
    return index // 12, index % 12 + 1
