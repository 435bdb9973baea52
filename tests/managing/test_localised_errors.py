"""Every API error code speaks Japanese or English by ``Accept-Language`` (issue 16; SPEC
§10-§11), with the manual's wording where it has one; the code itself never changes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.factories.api import ApiFactory, ApiHarness

JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff]")
ADDRESS = "taro@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{ADDRESS}"


@pytest.fixture
def box(api_factory: ApiFactory) -> dict[str, Any]:
    api = api_factory(security={"login_max_failures": 2})
    api.create_contract("C0001", included_addresses=1)
    created = api.create_address("C0001")
    api.create_contract("C0002")
    api.operator.patch("/v1/contracts/C0002", json={"status": "suspended"})
    password = api.operator.post("/v1/contracts/C0001/password").json()["password"]
    return {"api": api, "customer": api.create_key("customer", contract="C0001"),
            "mailbox": api.create_key("customer", contract="C0001", address=ADDRESS),
            "pop": created["initial_password"]["password"], "contract_password": password}


Call = Callable[[dict[str, Any], httpx.Client, dict[str, str]], httpx.Response]


def _as(box: dict[str, Any], key: str | None, headers: dict[str, str]) -> httpx.Client:
    api: ApiHarness = box["api"]
    client = api.client(box[key] if key else None)
    client.headers.update(headers)
    return client


def _session(box: dict[str, Any], headers: dict[str, str]) -> tuple[httpx.Client, str]:
    client = _as(box, None, headers)
    token = client.post("/v1/session", json={"customer_number": "C0001",
                                             "password": box["contract_password"]}).json()
    return client, token["csrf_token"]


CASES: dict[str, tuple[int, Callable[[dict[str, Any], dict[str, str]], httpx.Response]]] = {
    "unauthorized": (401, lambda b, h: _as(b, None, h).get("/v1/contracts/C0001")),
    "forbidden": (403, lambda b, h: _as(b, "mailbox", h).put(
        f"{BASE}/virus-check", json={"enabled": False})),
    "not_found": (404, lambda b, h: _as(b, "customer", h).get(
        "/v1/contracts/C0001/addresses/nobody@e06.example.net")),
    "method_not_allowed": (405, lambda b, h: _as(b, "customer", h).patch(f"{BASE}/spam")),
    "invalid": (422, lambda b, h: _as(b, "operator_key", h).get(
        "/v1/contracts/C0001/subdomain-candidates", params={"local_part": "ab"})),
    "conflict": (409, lambda b, h: _as(b, "operator_key", h).post(
        "/v1/contracts", json={"customer_number": "C0001", "contact_email": "a@b.example"})),
    "address_taken": (409, lambda b, h: _as(b, "operator_key", h).post(
        "/v1/contracts/C0001/addresses", json={"local_part": "taro", "subdomain": "e06",
                                               "accept_terms": True, "accept_charge": True})),
    "charge_required": (409, lambda b, h: _as(b, "operator_key", h).post(
        "/v1/contracts/C0001/addresses", json={"local_part": "jiro", "subdomain": "e06",
                                               "accept_terms": True})),
    "contract_suspended": (409, lambda b, h: _as(b, "operator_key", h).post(
        "/v1/contracts/C0002/addresses", json={"local_part": "jiro", "subdomain": "e06",
                                               "accept_terms": True})),
    "idempotency_mismatch": (422, lambda b, h: _replayed_with_another_body(b, h)),
    "session_expired": (401, lambda b, h: _expired(b, h)),
    "csrf": (403, lambda b, h: _session(b, h)[0].put(f"{BASE}/virus-check",
                                                      json={"enabled": False})),
    "sign_in_failed": (401, lambda b, h: _as(b, None, h).post(
        "/v1/session", json={"address": ADDRESS, "password": "wrong-one"})),
    "locked": (429, lambda b, h: _locked(b, h)),
    "address_suspended": (403, lambda b, h: _suspended_sign_in(b, h)),
    "bad_request": (400, lambda b, h: _as(b, None, h).post(
        "/autodiscover/autodiscover.xml", content=b"<a/>")),
    "too_large": (413, lambda b, h: _as(b, None, h).post(
        "/autodiscover/autodiscover.xml", content=b"x" * 10000)),
}


def _replayed_with_another_body(box: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    client = _as(box, "operator_key", headers)
    body = {"local_part": "jiro", "subdomain": "a01", "accept_terms": True,
            "accept_charge": True}
    first = client.post("/v1/contracts/C0001/addresses", json=body,
                        headers={"Idempotency-Key": "k1"})
    assert first.status_code in (201, 200)
    return client.post("/v1/contracts/C0001/addresses", json={**body, "virus_check": False},
                       headers={"Idempotency-Key": "k1"})


def _expired(box: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    client = _as(box, None, headers)
    client.cookies.set("mp_session", "no-such-session")
    return client.get("/v1/contracts/C0001")


def _locked(box: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    client = _as(box, None, headers)
    for n in range(2):  # two different guesses (the same one again would count once)
        client.post("/v1/session", json={"customer_number": "C0009", "password": f"x{n}"})
    return client.post("/v1/session", json={"customer_number": "C0009", "password": "x"})


def _suspended_sign_in(box: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    api: ApiHarness = box["api"]
    api.operator.patch("/v1/contracts/C0001", json={"status": "suspended"})
    return _as(box, None, headers).post("/v1/session",
                                        json={"address": ADDRESS, "password": box["pop"]})


@pytest.fixture
def keyed(box: dict[str, Any]) -> dict[str, Any]:
    box["operator_key"] = box["api"].operator_key
    return box


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("code", sorted(CASES))
def test_each_error_code_in_japanese_and_in_english(keyed: dict[str, Any], code: str,
                                                   language: str) -> None:
    status, call = CASES[code]
    response = call(keyed, {"Accept-Language": language})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if language == "ja":
        assert JAPANESE.search(error["message"]), error
    else:
        assert error["message"].isascii() and not JAPANESE.search(error["message"]), error


def test_the_manuals_wording_and_every_broken_field_at_once(keyed: dict[str, Any]) -> None:
    client = _as(keyed, "operator_key", {"Accept-Language": "ja-JP,ja;q=0.9"})
    response = client.post("/v1/contracts/C0001/addresses",
                           json={"local_part": "ab", "subdomain": 5, "bogus": 1})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "local_part"
    assert error["message"] == "3文字以上20文字以内で入力してください"
    details = {d["field"]: d["message"] for d in error["details"]}
    assert details == {"local_part": "3文字以上20文字以内で入力してください",
                       "subdomain": "文字列で指定してください",
                       "bogus": "この項目は指定できません"}


def test_without_accept_language_the_api_answers_in_english_and_the_portal_in_japanese(
    keyed: dict[str, Any],
) -> None:
    bearer = _as(keyed, "mailbox", {}).put(f"{BASE}/virus-check", json={"enabled": False})
    assert bearer.json()["error"]["message"] == "this setting needs a contract-level key"
    client, token = _session(keyed, {})
    charged = client.post("/v1/contracts/C0001/addresses", headers={"X-CSRF-Token": token},
                          json={"local_part": "jiro", "subdomain": "a01", "accept_terms": True})
    assert charged.json()["error"]["message"] == (
        "ご契約のメールアドレス1個はすべて利用中です。追加するメールアドレスは1個につき"
        "月額330円 (税込) かかります。追加料金に同意のうえ登録してください。")


def test_the_rules_are_published_in_the_requests_language(keyed: dict[str, Any]) -> None:
    api: ApiHarness = keyed["api"]
    ja = api.client().get("/v1/rules", headers={"Accept-Language": "ja"}).json()
    en = api.client().get("/v1/rules", headers={"Accept-Language": "en"}).json()
    assert ja["local_part"] == {"min": 3, "max": 20, "chars": "a-z0-9_-", "edge": "-_"}
    msgid = "must be {min}-{max} characters"
    assert ja["messages"][msgid] == "{min}文字以上{max}文字以内で入力してください"
    assert en["messages"][msgid] == msgid
    assert ja["lists"] == {"max_entries": 200, "max_entry_length": 255}
