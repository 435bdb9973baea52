"""The portal sign-in under attack (non-negotiable 3), on SQLite and PostgreSQL: the same
sign-in 32 times at once, a flood of wrong passwords counted exactly and then locked,
cookie-less and forged-cookie floods, oversized bodies — clear 4xx, never a 500."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx
import pytest

from mailplane.storage.models import WebSession
from tests.factories.api import ApiFactory, ApiHarness


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, api_factory: ApiFactory) -> ApiHarness:
    overrides: dict[str, Any] = {"security": {"login_max_failures": 5}}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    harness = api_factory(**overrides)
    harness.create_contract("C0001")
    harness.create_address("C0001")
    return harness


def _client(api: ApiHarness) -> httpx.Client:
    client = httpx.Client(base_url=api.base_url, timeout=60)
    api.clients.append(client)
    return client


def _password(api: ApiHarness) -> str:
    response = api.operator.post("/v1/contracts/C0001/password")
    assert response.status_code == 201
    return str(response.json()["password"])


def test_the_same_sign_in_in_parallel_gives_each_its_own_session(api: ApiHarness) -> None:
    password = _password(api)

    def one(_: int) -> int:
        client = _client(api)
        response = client.post("/v1/session",
                               json={"customer_number": "C0001", "password": password})
        if response.status_code != 200:
            return response.status_code
        token = response.json()["csrf_token"]
        return client.put("/v1/contracts/C0001/addresses/taro@e06.example.net/forwarding",
                          json={"destinations": []}, headers={"X-CSRF-Token": token}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(32)))
    assert statuses == [200] * 32
    with api.session_factory() as session:
        assert session.query(WebSession).count() == 32


def test_a_flood_of_wrong_passwords_locks_and_never_errs(api: ApiHarness) -> None:
    password = _password(api)

    def wrong(index: int) -> int:
        return _client(api).post("/v1/session", json={
            "customer_number": "C0001", "password": f"wrong-{index}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(wrong, range(40)))
    assert set(statuses) <= {401, 429}, statuses
    assert statuses.count(401) >= 5 and statuses.count(429) >= 1
    locked = _client(api).post("/v1/session",
                               json={"customer_number": "C0001", "password": password})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


def test_floods_without_or_with_forged_credentials_get_clear_refusals(api: ApiHarness) -> None:
    def forged(index: int) -> tuple[int, int, int]:
        client = _client(api)
        bare = client.get("/v1/contracts/C0001").status_code
        client.cookies.set("mp_session", f"forged-{index}")
        cookie = client.get("/v1/contracts/C0001").status_code
        change = client.put("/v1/contracts/C0001/addresses/taro@e06.example.net/virus-check",
                            json={"enabled": False}).status_code
        return bare, cookie, change

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(forged, range(48)))
    assert set(results) == {(401, 401, 401)}
    assert api.operator.get(
        "/v1/contracts/C0001/addresses/taro@e06.example.net/virus-check").json() == {
        "enabled": True}


@pytest.mark.parametrize("body", [
    {"customer_number": "C" * 10_000, "password": "x"},
    {"customer_number": "C0001", "password": "x" * 100_000},
    {"address": "a" * 5000 + "@e06.example.net", "password": "x"},
    {"customer_number": "C0001\r\nX-Injected: 1", "password": "x"},
    {"customer_number": ["C0001"], "password": {"a": [[[[]]]]}},
])
def test_bad_sign_in_bodies_are_422_or_401(api: ApiHarness, body: dict[str, Any]) -> None:
    response = _client(api).post("/v1/session", json=body)
    assert response.status_code in (401, 422), response.text
    assert "mp_session" not in response.headers.get("set-cookie", "")
