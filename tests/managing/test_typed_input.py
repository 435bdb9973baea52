"""Input as people type it (issue 22 finding 8), over real HTTP on SQLite and PostgreSQL:
full-width customer numbers and addresses are what the customer meant, the same way in
sign-in, forwarding, the deny and allow lists and the contact address; where folding is not
allowed (a password, a new local part) the refusal says 全角 — in Japanese; a password is
never cut; one letter is not a subject rule; the provider's own names cannot be registered."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mailplane.config.settings import Settings
from tests.factories.api import ApiFactory, ApiHarness

ADDRESS = "taro@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{ADDRESS}"
JA = {"Accept-Language": "ja"}
FULL_WIDTH = "ｆｒｉｅｎｄ＠ｅｘａｍｐｌｅ．ｊｐ"


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.fixture
def box(api_factory: ApiFactory, db_settings: Settings) -> tuple[ApiHarness, str, str]:
    """C0001 with taro@e06 on SQLite and on PostgreSQL: (api, contract password, POP)."""
    api = api_factory(database_url=db_settings.database_url)
    api.create_contract("C0001")
    created = api.create_address("C0001")
    response = api.operator.post("/v1/contracts/C0001/password")
    assert response.status_code == 201, response.text
    return api, response.json()["password"], created["initial_password"]["password"]


def _browser(api: ApiHarness) -> httpx.Client:
    client = httpx.Client(base_url=api.base_url, timeout=30, headers=JA)
    api.clients.append(client)
    return client


def test_a_full_width_customer_number_and_address_sign_in(box: Any) -> None:
    api, contract_password, pop_password = box
    signed = _browser(api).post("/v1/session", json={
        "customer_number": "\u3000" + full_width("C0001") + " ", "password": contract_password})
    assert signed.status_code == 200, signed.text
    assert signed.json()["contract"] == "C0001"
    mailbox = _browser(api).post("/v1/session", json={
        "address": full_width(ADDRESS).replace("．", "。", 1), "password": pop_password})
    assert mailbox.status_code == 200, mailbox.text
    assert mailbox.json()["address"] == ADDRESS
    # The password itself is never folded: its full-width form does not sign in; the
    # customer is told to turn the input method off (a password is half-width only).
    wrong = _browser(api).post("/v1/session", json={
        "customer_number": "C0001", "password": full_width(contract_password)})
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["error"]["field"] == "password"
    assert "日本語入力をオフ" in wrong.json()["error"]["message"]


def test_forwarding_and_both_lists_fold_full_width_the_same_way(box: Any) -> None:
    api = box[0]
    client = api.operator
    forwarding = client.put(f"{BASE}/forwarding", json={
        "destinations": [FULL_WIDTH, "ｍｏｂｉｌｅ＠ｅｘａｍｐｌｅ。ｊｐ"]})
    assert forwarding.status_code == 200, forwarding.text
    assert forwarding.json()["destinations"] == ["friend@example.jp", "mobile@example.jp"]
    deny = client.put(f"{BASE}/deny-list",
                      json={"addresses": [FULL_WIDTH, "＠ａｄｓ。ｅｘａｍｐｌｅ"]})
    assert deny.status_code == 200, deny.text
    assert deny.json()["addresses"] == ["friend@example.jp", "@ads.example"]
    allow = client.put(f"{BASE}/allow-list", json={"addresses": [FULL_WIDTH]})
    assert allow.json()["addresses"] == ["friend@example.jp"]


def test_an_address_with_japanese_in_it_is_refused_in_japanese(box: Any) -> None:
    api = box[0]
    for path, body, field in (
        ("forwarding", {"destinations": ["たろう@example.jp"]}, "destinations[0]"),
        ("deny-list", {"addresses": ["たろう@example.jp"]}, "addresses[0]"),
    ):
        response = api.operator.put(f"{BASE}/{path}", json=body, headers=JA)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field
        assert "メールアドレスは半角英数字・記号で入力してください" in error["message"]


def test_the_contact_address_is_folded_like_every_address(box: Any) -> None:
    api = box[0]
    typed = "ＨＡＮＡＫＯ＠ｎｅｗ。ｅｘａｍｐｌｅ．ｊｐ"
    response = api.operator.patch("/v1/contracts/C0001", json={"contact_email": typed})
    assert response.status_code == 200, response.text
    assert api.operator.get("/v1/contracts/C0001").json()["contact_email"] == (
        "hanako@new.example.jp")


@pytest.mark.parametrize(("new", "words"), [
    ("a" * 33, "33文字入力されています。パスワードは32文字以内"),
    ("Ab3" * 20, "60文字入力されています"),
    ("ｐａｓｓｗｏｒｄ１", "全角文字"),
])
def test_a_pop_password_over_the_limit_or_full_width_is_refused_not_cut(
        box: Any, new: str, words: str) -> None:
    api, _contract_password, pop_password = box
    response = api.operator.post(f"{BASE}/password", headers=JA,
                                 json={"current": pop_password, "new": new})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "new"
    assert words in response.json()["error"]["message"]
    # Nothing changed: the old password still signs in.
    assert _browser(api).post("/v1/session", json={
        "address": ADDRESS, "password": pop_password}).status_code == 200


@pytest.mark.parametrize("subject", ["a", "1", "ｱ", "広"])
def test_a_one_character_subject_rule_is_refused(box: Any, subject: str) -> None:
    api = box[0]
    response = api.operator.put(f"{BASE}/deny-list", headers=JA,
                                json={"subjects": ["広告", subject]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "subjects[1]"
    assert "文字だけ" in error["message"]
    assert api.operator.put(f"{BASE}/deny-list",
                            json={"subjects": ["広告", subject * 2]}).status_code == 200


@pytest.mark.parametrize("local_part", ["postmaster", "abuse", "root", "mailer-daemon",
                                        "hostmaster", "webmaster", "admin", "noc", "security"])
def test_the_providers_own_names_cannot_be_registered(box: Any, local_part: str) -> None:
    api = box[0]
    candidates = api.operator.get("/v1/contracts/C0001/subdomain-candidates",
                                  params={"local_part": local_part}, headers=JA)
    assert candidates.status_code == 422
    assert candidates.json()["error"]["field"] == "local_part"
    assert "予約されている" in candidates.json()["error"]["message"]
    created = api.operator.post("/v1/contracts/C0001/addresses", headers=JA, json={
        "local_part": local_part, "subdomain": "a01", "accept_terms": True})
    assert created.status_code == 422, created.text
    assert created.json()["error"]["field"] == "local_part"
    # "info" is a business name: a customer may have it by default.
    assert api.operator.post("/v1/contracts/C0001/addresses", json={
        "local_part": "info", "subdomain": "a01", "accept_terms": True}).status_code == 201


def test_the_reserved_names_are_the_operators_to_choose(api_factory: ApiFactory) -> None:
    api = api_factory(addresses={"reserved_local_parts": ["Info", "support"]})
    api.create_contract("C0001")
    rules = api.client().get("/v1/rules").json()
    assert rules["local_part"]["reserved"] == ["info", "support"]
    refused = api.operator.post("/v1/contracts/C0001/addresses", json={
        "local_part": "info", "subdomain": "a01", "accept_terms": True})
    assert refused.status_code == 422
    assert "info is reserved" in refused.json()["error"]["message"]
    api.create_address("C0001", local_part="postmaster", subdomain="a01")


@pytest.mark.parametrize("local_part", ["ｔａｒｏ", "たろう", "tarō"])
def test_a_full_width_local_part_is_refused_with_a_message_that_says_so(
        box: Any, local_part: str) -> None:
    api = box[0]
    response = api.operator.get("/v1/contracts/C0001/subdomain-candidates",
                                params={"local_part": local_part}, headers=JA)
    assert response.status_code == 422
    assert "半角英小文字・数字で入力してください" in response.json()["error"]["message"]
