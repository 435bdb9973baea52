"""Portal sign-in like My Page (issue 16; SPEC §10): contract holders with customer number
and contract password, mailbox users with address and POP password; a server-side session
in an HttpOnly SameSite=Strict cookie with idle and absolute timeouts; CSRF on changes;
sign-out on the server; failures throttled by the shared login guard."""

from __future__ import annotations

import concurrent.futures
from datetime import timedelta
from typing import Any

import httpx
import pytest

from mailplane.storage import web_sessions_repo
from mailplane.storage.models import WebSession
from tests.factories.api import ApiFactory, ApiHarness

ADDRESS = "taro@e06.example.net"


@pytest.fixture
def box(api_factory: ApiFactory) -> tuple[ApiHarness, str, str]:
    """Contract C0001 with one address; returns (api, contract password, POP password)."""
    # Three different wrong passwords for one account from one browser lock it (issue 22:
    # the per-IP limit counts different accounts, and is its own key).
    api = api_factory(security={"login_max_failures": 3, "login_ip_max_accounts": 3})
    api.create_contract("C0001")
    created = api.create_address("C0001")
    response = api.operator.post("/v1/contracts/C0001/password")
    assert response.status_code == 201, response.text
    return api, response.json()["password"], created["initial_password"]["password"]


def _browser(api: ApiHarness) -> httpx.Client:
    client = httpx.Client(base_url=api.base_url, timeout=30)
    api.clients.append(client)
    return client


def _sign_in(client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post("/v1/session", json=body)


def test_contract_holder_signs_in_with_an_httponly_strict_cookie(box: Any) -> None:
    api, contract_password, _ = box
    client = _browser(api)
    response = _sign_in(client, customer_number="C0001", password=contract_password)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["signed_in"] and body["role"] == "contract" and body["contract"] == "C0001"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http in tests: "auto" leaves Secure off
    token = client.cookies["mp_session"]
    # Only a hash of the id is stored.
    with api.session_factory() as session:
        stored = [row.id_hash for row in session.query(WebSession).all()]
    assert len(stored) == 1 and token not in stored[0] and stored[0] != token
    # The session acts like a customer key for its own contract.
    assert client.get("/v1/contracts/C0001/addresses").status_code == 200
    api.create_contract("C0002")
    assert client.get("/v1/contracts/C0002").status_code == 404


def test_mailbox_user_reaches_only_its_own_address(box: Any) -> None:
    api, _, pop_password = box
    api.create_address("C0001", local_part="hanako", subdomain="a01")
    client = _browser(api)
    response = _sign_in(client, address=ADDRESS, password=pop_password)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["role"] == "mailbox" and body["address"] == ADDRESS
    headers = {"X-CSRF-Token": body["csrf_token"]}
    rows = client.get("/v1/contracts/C0001/addresses").json()["addresses"]
    assert [row["address"] for row in rows] == [ADDRESS]
    base = f"/v1/contracts/C0001/addresses/{ADDRESS}"
    assert client.put(f"{base}/forwarding", json={"destinations": []},
                      headers=headers).status_code == 200
    refused = client.put(f"{base}/virus-check", json={"enabled": False}, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "この設定はご契約者さま (お客さま番号でログインした方) のみ変更できます")


def test_state_changes_need_the_csrf_token(box: Any) -> None:
    api, contract_password, _ = box
    client = _browser(api)
    token = _sign_in(client, customer_number="C0001", password=contract_password).json()[
        "csrf_token"]
    url = f"/v1/contracts/C0001/addresses/{ADDRESS}/virus-check"
    refused = client.put(url, json={"enabled": False})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf"
    wrong = client.put(url, json={"enabled": False}, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    assert api.operator.get(url).json() == {"enabled": True}
    ok = client.put(url, json={"enabled": False}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200
    # GET needs none; a bearer key never needs one.
    assert client.get(url).status_code == 200
    assert api.operator.put(url, json={"enabled": True}).status_code == 200


def test_sign_out_ends_the_session_on_the_server(box: Any) -> None:
    api, contract_password, _ = box
    client = _browser(api)
    token = _sign_in(client, customer_number="C0001", password=contract_password).json()[
        "csrf_token"]
    cookie = client.cookies["mp_session"]
    assert client.delete("/v1/session").status_code == 403  # no CSRF token
    assert client.delete("/v1/session", headers={"X-CSRF-Token": token}).status_code == 204
    # The old cookie, replayed, opens nothing.
    replay = _browser(api)
    replay.cookies.set("mp_session", cookie)
    response = replay.get("/v1/contracts/C0001/addresses")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_expired"
    assert response.json()["error"]["message"] == (
        "ログインの有効期限が切れました。もう一度ログインしてください")


def test_idle_and_absolute_timeouts(box: Any) -> None:
    api, contract_password, _ = box
    idle = api.settings.portal.session_idle_minutes
    client = _browser(api)
    _sign_in(client, customer_number="C0001", password=contract_password)
    api.clock.advance(timedelta(minutes=idle - 1))
    assert client.get("/v1/contracts/C0001").status_code == 200
    # Activity keeps it alive past the idle limit counted from sign-in ...
    api.clock.advance(timedelta(minutes=idle - 1))
    assert client.get("/v1/contracts/C0001").status_code == 200
    # ... but not past the idle limit counted from the last request.
    api.clock.advance(timedelta(minutes=idle))
    expired = client.get("/v1/contracts/C0001")
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "session_expired"
    assert client.get("/v1/session").json() == {
        "signed_in": False, "expired": True, "role": None, "contract": None, "address": None,
        "csrf_token": None, "idle_minutes": None, "expires_at": None}

    # Absolute: active every 10 minutes, still ended after session_absolute_hours.
    _sign_in(client, customer_number="C0001", password=contract_password)
    hours = api.settings.portal.session_absolute_hours
    for _ in range(hours * 6 - 1):
        api.clock.advance(timedelta(minutes=10))
        assert client.get("/v1/contracts/C0001").status_code == 200
    api.clock.advance(timedelta(minutes=10))
    assert client.get("/v1/contracts/C0001").status_code == 401


def test_wrong_passwords_are_refused_alike_and_then_locked(box: Any) -> None:
    api, contract_password, _ = box
    client = _browser(api)
    unknown = _sign_in(client, customer_number="C9999", password="whatever1")
    wrong = _sign_in(client, customer_number="C0001", password="whatever1")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["error"] == wrong.json()["error"]
    assert wrong.json()["error"]["message"] == "お客さま番号またはパスワードが正しくありません"
    assert "mp_session" not in client.cookies
    _sign_in(client, customer_number="C0001", password="whatever2")
    _sign_in(client, customer_number="C0001", password="whatever3")  # third: locked
    locked = _sign_in(client, customer_number="C0001", password=contract_password)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked"
    assert int(locked.headers["Retry-After"]) > 0
    english = client.post("/v1/session", headers={"Accept-Language": "en"},
                          json={"customer_number": "C0001", "password": contract_password})
    assert english.json()["error"]["message"].startswith("too many failed sign-ins")


def test_a_new_contract_password_is_shown_once_and_ends_contract_sessions(box: Any) -> None:
    api, first, pop_password = box
    holder, mailbox = _browser(api), _browser(api)
    _sign_in(holder, customer_number="C0001", password=first)
    _sign_in(mailbox, address=ADDRESS, password=pop_password)
    response = api.operator.post("/v1/contracts/C0001/password")
    assert response.status_code == 201
    second = response.json()
    assert second["password"] != first and len(second["reading"]) == len(second["password"])
    assert holder.get("/v1/contracts/C0001").status_code == 401
    assert mailbox.get("/v1/contracts/C0001").status_code == 200
    assert _sign_in(_browser(api), customer_number="C0001", password=first).status_code == 401
    assert _sign_in(_browser(api), customer_number="C0001",
                    password=second["password"]).status_code == 200
    customer_key = api.create_key("customer", contract="C0001")
    assert api.client(customer_key).post("/v1/contracts/C0001/password").status_code == 403
    audit = api.operator.get("/v1/contracts/C0001/audit").json()["entries"]
    assert any(e["action"] == "contract.password_set" for e in audit)
    assert second["password"] not in str(audit)


def test_a_contract_without_a_password_cannot_be_signed_in_to(api: ApiHarness) -> None:
    api.create_contract("C0003")
    assert _sign_in(_browser(api), customer_number="C0003", password="").status_code == 401


def test_sign_in_needs_exactly_one_of_customer_number_and_address(box: Any) -> None:
    api, contract_password, _ = box
    both = _sign_in(_browser(api), customer_number="C0001", address=ADDRESS,
                    password=contract_password)
    neither = _sign_in(_browser(api), password=contract_password)
    assert both.status_code == neither.status_code == 422


def test_parallel_sign_ins_each_get_their_own_session(box: Any) -> None:
    api, contract_password, _ = box

    def one(_: int) -> tuple[int, str]:
        client = _browser(api)
        response = _sign_in(client, customer_number="C0001", password=contract_password)
        return response.status_code, client.cookies.get("mp_session", "")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert [status for status, _ in results] == [200] * 16
    assert len({cookie for _, cookie in results}) == 16
    with api.session_factory() as session:
        assert session.query(WebSession).count() == 16
        web_sessions_repo.purge_expired(session, now=api.clock.now() + timedelta(days=2),
                                        idle_before=api.clock.now())
        session.commit()
        assert session.query(WebSession).count() == 0


def test_oversized_or_garbage_cookies_are_just_expired(box: Any) -> None:
    api, _, _ = box
    for value in ("x" * 5000, "%00%ff\\x01", "a;b"):
        client = _browser(api)
        client.cookies.set("mp_session", value)
        response = client.get("/v1/contracts/C0001")
        assert response.status_code == 401
        assert client.get("/v1/session").status_code == 200


def test_the_cookie_is_secure_when_configured_or_over_https(api_factory: ApiFactory) -> None:
    api = api_factory(portal={"cookie_secure": "always"})
    api.create_contract("C0001")
    password = api.operator.post("/v1/contracts/C0001/password").json()["password"]
    response = _browser(api).post("/v1/session",
                                  json={"customer_number": "C0001", "password": password})
    assert response.status_code == 200
    assert "secure" in response.headers["set-cookie"].lower().split("; ")
