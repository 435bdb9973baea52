"""Money (SPEC §9a, issue 22 finding 5; 004 L474-485): 5 addresses included, each further
one 330 yen a month, billed per purchase with no proration — from the month after the
purchase, and for the month a slot ends (so a slot bought and given up within a month is
billed once).  The price is known before the customer confirms; the table states the
monthly total; 料金明細 lists the purchases by month; the registration notice of a paid
address states the charge."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

from sqlalchemy import select

from mailplane.rules.billing import Purchase, billed_months, statement
from mailplane.storage.models import OutboundJob, SlotPurchase
from tests.factories.api import ApiHarness

TZ = ZoneInfo("Asia/Tokyo")
BASE = "/v1/contracts/C0001"


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ).astimezone(UTC)


def test_a_purchase_is_billed_from_the_next_month_and_for_its_last_month() -> None:
    def months(bought: date, ended: date | None) -> list[tuple[int, int]]:
        purchase = Purchase("x@e06.example.net", 330, _at(bought), _at(ended) if ended else None)
        return billed_months(purchase, upto=(2027, 3), tz=TZ)

    assert months(date(2026, 11, 5), None) == [(2026, 12), (2027, 1), (2027, 2), (2027, 3)]
    assert months(date(2026, 11, 5), date(2027, 1, 10)) == [(2026, 12), (2027, 1)]
    # Bought and given up within one month: that month is billed (per purchase).
    assert months(date(2026, 11, 5), date(2026, 11, 20)) == [(2026, 11)]
    # Bought at 23:30 on the last day in Tokyo (14:30 UTC): a purchase of that month.
    late = datetime(2026, 11, 30, 23, 30, tzinfo=TZ).astimezone(UTC)
    assert billed_months(Purchase("y", 330, late, None), upto=(2026, 12), tz=TZ) == [
        (2026, 12)]
    # Buy, give up, buy again in one month: two purchases, two charges (004 L482).
    twice = [Purchase("a", 330, _at(date(2026, 11, 2)), _at(date(2026, 11, 3))),
             Purchase("a", 330, _at(date(2026, 11, 4)), None)]
    november, = statement(twice, first=(2026, 11), last=(2026, 11), tz=TZ)
    assert november.total_yen == 330  # the first; the second bills from December
    december = statement(twice, first=(2026, 12), last=(2026, 12), tz=TZ)[0]
    assert december.total_yen == 330


def test_the_price_is_known_before_confirming_and_the_table_states_the_total(
        api: ApiHarness) -> None:
    api.create_contract("C0001")
    for n in range(5):
        api.create_address("C0001", f"user{n}", "e06")
    before = api.operator.get(BASE).json()
    assert before["charges"] == {"extra_monthly_yen": 330, "monthly_total_yen": 0,
                                 "next_address_yen": 330}
    created = api.create_address("C0001", "sixth", "e06", accept_charge=True)
    assert created["charges"]["monthly_total_yen"] == 330
    table = api.operator.get(f"{BASE}/addresses").json()
    assert table["quota"] == {"contracted": 6, "used": 6, "included": 5, "extra": 1}
    assert table["charges"] == {"extra_monthly_yen": 330, "monthly_total_yen": 330,
                                "next_address_yen": 330}
    with api.session_factory() as session:
        purchases = session.scalars(select(SlotPurchase)).all()
        notices = session.scalars(select(OutboundJob).where(OutboundJob.kind == "notice")
                                  ).all()
    assert [(p.address, p.monthly_yen, p.ended_at) for p in purchases] == [
        ("sixth@e06.example.net", 330, None)]
    texts = []
    for job in notices:
        assert job.message is not None
        body = message_from_bytes(job.message, policy=policy.default).get_body()
        assert body is not None
        texts.append(body.get_content())
    sixth = [text for text in texts if "sixth@e06.example.net" in text]
    assert len(sixth) == 1
    assert "追加料金: 月額330円(税込)" in sixth[0] and "330 yen a month" in sixth[0]
    assert "月額合計: 330円 (1個)" in sixth[0]
    assert not any("追加料金" in text for text in texts if "user0@" in text)


def test_billing_lists_purchases_by_month(api: ApiHarness) -> None:
    api.create_contract("C0001", included_addresses=1)
    api.create_address("C0001", "taro", "e06")
    api.create_address("C0001", "jiro", "e06", accept_charge=True)  # 2026/11/23
    holder = api.client(api.create_key("customer", contract="C0001"))
    api.clock.advance(timedelta(days=30))  # 2026/12/23
    api.create_address("C0001", "saburo", "e06", accept_charge=True)
    assert api.operator.delete(f"{BASE}/addresses/saburo@e06.example.net").status_code == 204
    api.clock.advance(timedelta(days=40))  # 2027/02/01

    bill = holder.get(f"{BASE}/billing")
    assert bill.status_code == 200, bill.text
    data = bill.json()
    assert data["extra"] == 1 and data["monthly_total_yen"] == 330
    months = {m["month"]: m for m in data["months"]}
    # From the month the contract began (2026/11) to this one, newest first.
    assert [m["month"] for m in data["months"]] == ["2027/02", "2027/01", "2026/12", "2026/11"]
    assert data["months"][0]["current"]
    assert months["2026/11"]["total_yen"] == 0  # bought in November: billed from December
    assert months["2026/12"]["total_yen"] == 660  # jiro; saburo bought and given up
    assert sorted(line["address"] for line in months["2026/12"]["lines"]) == [
        "jiro@e06.example.net", "saburo@e06.example.net"]
    saburo = next(line for line in months["2026/12"]["lines"]
                  if line["address"].startswith("saburo"))
    assert saburo == {"address": "saburo@e06.example.net", "purchased_on": "2026/12/23",
                      "ended_on": "2026/12/23", "monthly_yen": 330,
                      "purchased_in_month": True}
    assert months["2027/01"]["total_yen"] == 330
    assert months["2027/02"]["total_yen"] == 330


def test_only_the_contract_holder_sees_the_billing(api: ApiHarness) -> None:
    api.create_contract("C0001")
    api.create_address("C0001", "taro", "e06")
    user = api.client(api.create_key("customer", contract="C0001",
                                     address="taro@e06.example.net"))
    assert user.get(f"{BASE}/billing").status_code == 403
    api.create_contract("C0002")
    other = api.client(api.create_key("customer", contract="C0002"))
    assert other.get(f"{BASE}/billing").status_code == 404


def test_the_operators_slots_are_purchases_too(api: ApiHarness) -> None:
    api.create_contract("C0001")
    assert api.operator.patch(BASE, json={"extra_slots": 2}).status_code == 200
    assert api.operator.patch(BASE, json={"extra_slots": 1}).status_code == 200
    with api.session_factory() as session:
        rows = session.scalars(select(SlotPurchase).order_by(SlotPurchase.id)).all()
    assert [(r.address, r.ended_at is None) for r in rows] == [("", False), ("", True)] or [
        (r.address, r.ended_at is None) for r in rows] == [("", True), ("", False)]
    assert sum(r.ended_at is None for r in rows) == 1
