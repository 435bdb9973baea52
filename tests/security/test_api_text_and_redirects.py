"""API and portal edges (issue 20, finding 12), over a real socket, on SQLite and
PostgreSQL: invalid Unicode in any JSON body is 422 naming the field — never a 500 with a
traceback — on every endpoint that takes JSON; and no redirect takes its host from the
request's ``Host`` header."""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.factories.api import ApiHarness

CN = "C0001"
ADDRESS = "taro@e06.example.net"
BASE = f"/v1/contracts/{CN}/addresses/{ADDRESS}"
LONE_SURROGATE = "\ud800"
INVALID_TEXT = {"ja": "読み取れない文字 (正しくない Unicode) が含まれています",
                "en": "contains characters that are not valid Unicode text"}

#: A valid body for every JSON call of the API (method, OpenAPI path, concrete path, body):
#: each string in it is replaced by a lone surrogate in turn.  The test below fails when
#: the published API gains a JSON call this table does not know.
CALLS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("POST", "/v1/api-keys", "/v1/api-keys",
     {"role": "customer", "contract": CN, "address": ADDRESS, "label": "phone"}),
    ("POST", "/v1/contracts", "/v1/contracts",
     {"customer_number": "C0002", "contact_email": "c2@contact.example.jp"}),
    ("PATCH", "/v1/contracts/{cn}", f"/v1/contracts/{CN}",
     {"status": "active", "contact_email": "c1@contact.example.jp"}),
    ("POST", "/v1/contracts/{cn}/addresses", f"/v1/contracts/{CN}/addresses",
     {"local_part": "jiro", "subdomain": "e06", "base_domain": "example.net",
      "accept_terms": True, "accept_charge": True}),
    ("PATCH", "/v1/contracts/{cn}/addresses/{address}", BASE, {"status": "active"}),
    ("POST", "/v1/contracts/{cn}/addresses/{address}/password", f"{BASE}/password",
     {"current": "Current.pass1", "new": "Another.pass2"}),
    ("PUT", "/v1/contracts/{cn}/addresses/{address}/virus-check", f"{BASE}/virus-check",
     {"enabled": True}),
    ("PUT", "/v1/contracts/{cn}/addresses/{address}/spam", f"{BASE}/spam",
     {"judge": True, "quarantine": False, "notify": False}),
    ("PUT", "/v1/contracts/{cn}/addresses/{address}/deny-list", f"{BASE}/deny-list",
     {"addresses": ["spam@example.com"], "subjects": ["win big"],
      "conditions": {"no_from": False}}),
    ("PUT", "/v1/contracts/{cn}/addresses/{address}/allow-list", f"{BASE}/allow-list",
     {"addresses": ["friend@example.com"]}),
    ("PUT", "/v1/contracts/{cn}/addresses/{address}/forwarding", f"{BASE}/forwarding",
     {"destinations": ["copy@example.org"], "keep_copy": True}),
    ("PUT", "/v1/contracts/{cn}/addresses/{address}/auto-reply", f"{BASE}/auto-reply",
     {"enabled": True, "special_senders": ["boss@example.com"],
      "special_message": "出張中です", "default_message": "不在です"}),
    ("PUT", "/v1/contracts/{cn}/addresses/{address}/overseas", f"{BASE}/overseas",
     {"enabled": False}),
    ("PUT", "/v1/contracts/{cn}/addresses/{address}/quota", f"{BASE}/quota",
     {"quota_bytes": 2_000_000_000}),
    ("POST", "/v1/contracts/{cn}/addresses/{address}/quarantine/delete",
     f"{BASE}/quarantine/delete", {"ids": ["q-1", "q-2"]}),
    ("POST", "/v1/session", "/v1/session", {"customer_number": CN, "password": "x-x-x-x"}),
    ("POST", "/v1/session", "/v1/session", {"address": ADDRESS, "password": "x-x-x-x"}),
    # The account around the settings (issue 22): recovery, contact change, 解約.
    ("POST", "/v1/recovery", "/v1/recovery", {"customer_number": CN}),
    ("POST", "/v1/recovery/verify", "/v1/recovery/verify",
     {"customer_number": CN, "code": "12345678", "new_password": "Another.pass2"}),
    ("POST", "/v1/contracts/{cn}/password/change", f"/v1/contracts/{CN}/password/change",
     {"current": "Current.pass1", "new": "Another.pass2"}),
    ("POST", "/v1/contracts/{cn}/contact-email/verification",
     f"/v1/contracts/{CN}/contact-email/verification",
     {"contact_email": "new@contact.example.jp"}),
    ("POST", "/v1/contracts/{cn}/contact-email/verification/check",
     f"/v1/contracts/{CN}/contact-email/verification/check", {"code": "123456"}),
    ("PUT", "/v1/contracts/{cn}/contact-email", f"/v1/contracts/{CN}/contact-email",
     {"code": "123456"}),
    ("POST", "/v1/contracts/{cn}/termination", f"/v1/contracts/{CN}/termination",
     {"last_day": "2027/01/31", "password": "Current.pass1"}),
]


def _json(body: Any) -> bytes:
    """The body as an attacker writes it: a lone surrogate as the escape ``\\ud800``."""
    return json.dumps(body, ensure_ascii=True).encode()


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _string_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _string_paths(child, (*path, index))


def _with(body: dict[str, Any], path: tuple[Any, ...], text: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = text
    return changed


def _variants(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Each string leaf broken in turn (alone, then inside valid text), then a key."""
    for path in _string_paths(body):
        name = ".".join(str(p) for p in path)
        yield name, _with(body, path, LONE_SURROGATE)
        yield name, _with(body, path, "ok\udfff\ud800ok")  # a pair the wrong way round
    yield "", {**body, f"x{LONE_SURROGATE}": 1}


@pytest.fixture
def box(any_api: ApiHarness) -> ApiHarness:
    any_api.create_contract(CN)
    any_api.create_address(CN, local_part="taro", subdomain="e06")
    return any_api


def test_the_table_knows_every_json_call(box: ApiHarness) -> None:
    published = {
        (method.upper(), path)
        for path, operations in httpx.get(f"{box.base_url}/openapi.json").json()["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    assert published == {(method, path) for method, path, _url, _body in CALLS}


@pytest.mark.parametrize("language", ["ja", "en"])
def test_invalid_unicode_in_any_json_string_is_422_on_every_call(box: ApiHarness,
                                                                 language: str) -> None:
    client = box.client(box.operator_key)
    client.headers["Accept-Language"] = language
    answers: list[str] = []
    for method, _path, url, body in CALLS:
        for field, broken in _variants(body):
            response = client.request(method, url, content=_json(broken),
                                      headers={"Content-Type": "application/json"})
            error = response.json().get("error", {})
            if response.status_code != 422 or error.get("message") != INVALID_TEXT[language]:
                answers.append(f"{method} {url} {field}: {response.status_code} "
                               f"{response.text[:200]}")
                continue
            assert LONE_SURROGATE not in (error.get("field") or "")
            if field:
                assert error["field"] == field
    assert not answers, "\n".join(answers)
    # Nothing was written on the way: the contract and the address are as they were.
    assert box.operator.get(f"/v1/contracts/{CN}").json()["contact_email"] == \
        "c0001@contact.example.jp"
    assert box.operator.get(f"{BASE}/forwarding").json()["destinations"] == []


@pytest.mark.parametrize("raw", [
    b'{"destinations": ["a\xff@example.org"], "keep_copy": true}',
    b'{"destinations": ["a\xed\xa0\x80@example.org"], "keep_copy": true}',  # CESU surrogate
    b'{"destinations": ["\xc0\xae@example.org"], "keep_copy": true}',  # overlong
])
def test_bytes_that_are_not_utf8_are_422_too(box: ApiHarness, raw: bytes) -> None:
    response = box.operator.put(f"{BASE}/forwarding", content=raw,
                                headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"] == INVALID_TEXT["en"]


def test_a_portal_session_gets_the_same_answer(box: ApiHarness) -> None:
    password = box.operator.post(f"/v1/contracts/{CN}/password").json()["password"]
    browser = box.client()
    signed_in = browser.post("/v1/session", json={"customer_number": CN,
                                                   "password": password})
    token = signed_in.json()["csrf_token"]
    response = browser.put(f"{BASE}/auto-reply", content=_json(
        {"enabled": True, "default_message": LONE_SURROGATE}),
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == {"code": "invalid", "field": "default_message",
                                        "message": INVALID_TEXT["ja"]}


def _get(box: ApiHarness, path: str, host: str) -> http.client.HTTPResponse:
    """A raw request with its own ``Host`` header (httpx would set its own)."""
    parts = urlsplit(box.base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                            timeout=30)
    connection.putrequest("GET", path, skip_host=True)
    connection.putheader("Host", host)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.parametrize("path", ["/portal", "/docs/", "/v1/session/",
                                  "/portal?next=//evil.example/"])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "[::1]:1"])
def test_redirects_never_take_their_host_from_the_request(box: ApiHarness, path: str,
                                                          host: str) -> None:
    response = _get(box, path, host)
    assert response.status >= 300, (path, response.status)
    assert response.status < 400, (path, response.status)
    location = response.getheader("Location") or ""
    parts = urlsplit(location)
    assert not parts.scheme and not parts.netloc, location
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert "evil.example" not in location.split("?")[0]
    # Followed from the real site, it still leads to the page asked for.
    followed = httpx.get(f"{box.base_url}{location}", follow_redirects=True)
    assert followed.status_code in (200, 401, 405), (location, followed.status_code)
