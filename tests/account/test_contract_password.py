"""The contract password changed in the portal (SPEC §9a, issue 22 finding 2): the current
one is needed (checked like a sign-in), the new one follows the rules — refused with a
reason, never cut — and the contract's other portal sessions end."""

from __future__ import annotations

import httpx

from tests.factories.api import ApiHarness
from tests.factories.notices import NoticeInboxFactory

CONTACT = "c0001@contact.example.jp"


def _session(api: ApiHarness, password: str) -> httpx.Client:
    client = api.client()
    signed = client.post("/v1/session", json={"customer_number": "C0001", "password": password})
    assert signed.status_code == 200, signed.text
    client.headers["X-CSRF-Token"] = signed.json()["csrf_token"]
    client.headers["Accept-Language"] = "ja"
    return client


def test_change_needs_the_current_password_and_ends_the_other_sessions(
        api: ApiHarness, notice_inbox: NoticeInboxFactory) -> None:
    api.create_contract("C0001")
    old = api.operator.post("/v1/contracts/C0001/password").json()["password"]
    inbox = notice_inbox(api)
    here, elsewhere = _session(api, old), _session(api, old)
    path = "/v1/contracts/C0001/password/change"

    wrong = here.post(path, json={"current": "not-it-at-all", "new": "Natsu-no-yama.99"})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["field"] == "current"
    long = here.post(path, json={"current": old, "new": "y" * 65})
    assert long.status_code == 422 and long.json()["error"]["field"] == "new"
    same = here.post(path, json={"current": old, "new": old})
    assert same.status_code == 422 and same.json()["error"]["field"] == "new"

    done = here.post(path, json={"current": old, "new": "Natsu-no-yama.99"})
    assert done.status_code == 200, done.text
    assert here.get("/v1/contracts/C0001").status_code == 200  # this session stays
    assert elsewhere.get("/v1/contracts/C0001").status_code == 401  # the other ended
    _session(api, "Natsu-no-yama.99")
    # The queue delivers concurrently: the notices of one batch arrive in any order.
    notices = [inbox.text(message) for message in inbox.to(CONTACT)]
    assert any("お客さま番号のパスワードの変更" in notice for notice in notices), notices
    assert not any("Natsu-no-yama.99" in notice for notice in notices)


def test_a_mailbox_user_cannot_change_the_contract_password(api: ApiHarness) -> None:
    api.create_contract("C0001")
    api.create_address("C0001", "taro", "e06")
    user = api.client(api.create_key("customer", contract="C0001",
                                     address="taro@e06.example.net"))
    response = user.post("/v1/contracts/C0001/password/change",
                         json={"current": "x" * 10, "new": "y" * 10})
    assert response.status_code == 403
