"""The contact address (SPEC §9a, issue 22 finding 3; 000 L60-L200): changed by the
customer in the seed's steps 入力 → 認証コード → 確認 → 完了 — a code to the new address
(read from the delivered mail), a notice to the old one, audited — and by the operator,
who tells the old address too.  A takeover never goes unnoticed."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from mailplane.storage.models import AuditRecord
from tests.factories.api import ApiHarness
from tests.factories.notices import NoticeInbox, NoticeInboxFactory

OLD = "c0001@contact.example.jp"
NEW = "hanako@new.example.jp"
BASE = "/v1/contracts/C0001"


@pytest.fixture
def holder(api: ApiHarness) -> httpx.Client:
    """The contract holder's own key (what a portal session stands for)."""
    api.create_contract("C0001")
    return api.client(api.create_key("customer", contract="C0001"))


def _subjects(inbox: NoticeInbox, address: str) -> list[str]:
    return [inbox.text(m) for m in inbox.to(address)]


def test_the_four_steps_change_it_and_both_addresses_hear_of_it(
        api: ApiHarness, holder: httpx.Client, notice_inbox: NoticeInboxFactory) -> None:
    inbox = notice_inbox(api)
    started = holder.post(f"{BASE}/contact-email/verification", json={"contact_email": NEW})
    assert started.status_code == 202, started.text
    assert started.json()["sent_to"] == NEW
    code = inbox.code(NEW)
    assert len(code) == 6
    assert not [t for t in _subjects(inbox, OLD) if code in t]  # only the new address
    # Nothing changed yet: the code is checked (step 2), then confirmed (step 3).
    checked = holder.post(f"{BASE}/contact-email/verification/check",
                          json={"code": "".join(chr(ord(c) + 0xFEE0) for c in code)})
    assert checked.status_code == 200 and checked.json() == {"contact_email": NEW}
    assert holder.get(BASE).json()["contact_email"] == OLD
    done = holder.put(f"{BASE}/contact-email", json={"code": code})
    assert done.status_code == 200, done.text
    assert done.json()["contact_email"] == NEW
    assert holder.get(BASE).json()["contact_email"] == NEW
    assert holder.put(f"{BASE}/contact-email", json={"code": code}).status_code == 422  # once

    to_old = _subjects(inbox, OLD)[-1]
    assert "連絡先メールアドレスの変更" in to_old and "ha***@new.example.jp" in to_old
    assert NEW not in to_old
    assert "連絡先メールアドレスの変更" in _subjects(inbox, NEW)[-1]
    with api.session_factory() as session:
        audit = session.scalars(select(AuditRecord).where(
            AuditRecord.action == "contract.contact_change")).one()
    assert audit.detail == {"old": OLD, "new": NEW} and audit.actor.startswith("customer:")
    # From now on notices go to the new address.
    api.create_address("C0001", "taro", "e06")
    assert "メールアドレスの新規登録" in _subjects(inbox, NEW)[-1]


@pytest.mark.parametrize("value", [
    "evil@example.jp\r\nBcc: victim@example.org", "a\x00b@example.jp", "tab\t@example.jp",
    "x" * 250 + "@example.jp", "no-at-sign",
])
def test_a_contact_address_with_control_characters_or_junk_is_refused(
        api: ApiHarness, holder: httpx.Client, value: str) -> None:
    for response in (
        holder.post(f"{BASE}/contact-email/verification", json={"contact_email": value}),
        api.operator.patch(BASE, json={"contact_email": value}),
        api.operator.post("/v1/contracts", json={"customer_number": "C0002",
                                                 "contact_email": value}),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "contact_email"
    assert holder.get(BASE).json()["contact_email"] == OLD


def test_wrong_and_old_codes_change_nothing(api: ApiHarness, holder: httpx.Client,
                                            notice_inbox: NoticeInboxFactory) -> None:
    inbox = notice_inbox(api)
    holder.post(f"{BASE}/contact-email/verification", json={"contact_email": NEW})
    code = inbox.code(NEW)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(api.settings.account.code_max_attempts):
        response = holder.put(f"{BASE}/contact-email", json={"code": wrong})
        assert response.status_code == 422
        assert response.json()["error"] == {"code": "invalid_code", "field": "code",
                                            "message": response.json()["error"]["message"]}
    assert holder.put(f"{BASE}/contact-email", json={"code": code}).status_code == 422
    holder.post(f"{BASE}/contact-email/verification", json={"contact_email": NEW})
    late = inbox.code(NEW)
    api.clock.advance(timedelta(minutes=api.settings.account.code_minutes + 1))
    assert holder.put(f"{BASE}/contact-email", json={"code": late}).status_code == 422
    assert holder.get(BASE).json()["contact_email"] == OLD


def test_codes_to_new_addresses_are_rate_limited(api: ApiHarness,
                                                 holder: httpx.Client) -> None:
    limit = api.settings.account.codes_per_account_per_hour
    answers = [holder.post(f"{BASE}/contact-email/verification",
                           json={"contact_email": f"n{i}@new.example.jp"}).status_code
               for i in range(limit + 2)]
    assert answers == [202] * limit + [429, 429]


def test_a_mailbox_user_cannot_change_it(api: ApiHarness) -> None:
    api.create_contract("C0001")
    api.create_address("C0001", "taro", "e06")
    user = api.client(api.create_key("customer", contract="C0001",
                                     address="taro@e06.example.net"))
    response = user.post(f"{BASE}/contact-email/verification", json={"contact_email": NEW})
    assert response.status_code == 403


def test_the_operators_change_tells_the_old_address(
        api: ApiHarness, notice_inbox: NoticeInboxFactory) -> None:
    api.create_contract("C0001")
    inbox = notice_inbox(api)
    response = api.operator.patch(BASE, json={"contact_email": NEW})
    assert response.status_code == 200 and response.json()["contact_email"] == NEW
    assert "the contact address was changed" in _subjects(inbox, OLD)[-1]
    assert "the contact address was changed" in _subjects(inbox, NEW)[-1]
