"""A forwarding destination is checked when it is saved (issue 20; issue 22 item 7; SPEC
§5): a hosted destination must be a registered address, a remote one must be in a domain
that exists.  Over real HTTP, with the loopback DNS stub as the API's resolver, on SQLite
and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories.api import ApiFactory, ApiHarness
from tests.factories.dns import DnsStub

TARO = "taro@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{TARO}/forwarding"
JA = {"Accept-Language": "ja"}
EN = {"Accept-Language": "en"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgresql":
        return {"database_url": request.getfixturevalue("pg_url")}
    return {}


def _api(api_factory: ApiFactory, database: dict[str, Any], dns: tuple[str, int],
         timeout: float = 2.0) -> ApiHarness:
    api = api_factory(**database, outbound={"dns_nameserver": f"{dns[0]}:{dns[1]}"},
                      forwarding={"check_destination_domains": True,
                                  "dns_timeout_seconds": timeout})
    api.create_contract("C0001")
    api.create_address("C0001", "taro", "e06")
    api.create_address("C0001", "hanako", "e06")
    return api


def _put(api: ApiHarness, destinations: list[str], headers: dict[str, str]) -> httpx.Response:
    return api.operator.put(BASE, json={"destinations": destinations, "keep_copy": False},
                            headers=headers)


async def test_a_destination_in_a_domain_that_does_not_exist_is_refused_in_japanese(
    api_factory: ApiFactory, database: dict[str, Any], dns_stub: DnsStub,
) -> None:
    dns_stub.zone["mobile.example.jp"] = {"MX": [(10, "mx.mobile.example.jp")]}
    api = _api(api_factory, database, dns_stub.address)

    refused = _put(api, ["me@mobile.example.jp", "me@typo-mobile.example.jp"], JA)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["field"] == "destinations[1]"
    assert error["message"] == (
        "転送先メールアドレスのドメイン「typo-mobile.example.jp」は存在しません")
    assert _put(api, ["me@typo-mobile.example.jp"], EN).json()["error"]["message"] == (
        "the domain typo-mobile.example.jp does not exist")
    # Both MX and A/AAAA were asked before the domain was judged missing.
    asked = {rdtype for name, rdtype in dns_stub.queries if name == "typo-mobile.example.jp"}
    assert asked == {"MX", "A", "AAAA"}
    assert api.operator.get(BASE).json()["destinations"] == []

    saved = _put(api, ["me@mobile.example.jp"], JA)
    assert saved.status_code == 200, saved.text
    assert saved.json()["destinations"] == ["me@mobile.example.jp"]


async def test_a_domain_with_only_an_address_record_or_a_null_mx(
    api_factory: ApiFactory, database: dict[str, Any], dns_stub: DnsStub,
) -> None:
    dns_stub.zone["a-only.example"] = {"A": ["192.0.2.1"]}  # RFC 5321 §5.1: implicit MX
    dns_stub.zone["nomail.example"] = {"MX": [(0, ".")]}  # RFC 7505: accepts no mail
    api = _api(api_factory, database, dns_stub.address)
    assert _put(api, ["me@a-only.example"], EN).status_code == 200
    refused = _put(api, ["me@nomail.example"], EN)
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == "the domain nomail.example does not exist"


async def test_when_dns_cannot_answer_the_destination_is_accepted(
    api_factory: ApiFactory, database: dict[str, Any],
) -> None:
    with DnsStub(silent=True) as silent:
        api = _api(api_factory, database, silent.address, timeout=0.5)
        saved = _put(api, ["me@unknown.example"], JA)
        assert saved.status_code == 200, saved.text
        assert silent.queries  # it was asked, and said nothing in time


async def test_a_hosted_destination_must_be_a_registered_address(
    api_factory: ApiFactory, database: dict[str, Any], dns_stub: DnsStub,
) -> None:
    api = _api(api_factory, database, dns_stub.address)
    refused = _put(api, ["hanakoo@e06.example.net"], JA)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert (error["field"], error["message"]) == (
        "destinations[0]", "hanakoo@e06.example.net は登録されていないメールアドレスです")
    assert _put(api, ["Hanako@E06.example.net"], EN).status_code == 200
    # Our own domains are never looked up in DNS.
    assert [q for q in dns_stub.queries if "example.net" in q[0]] == []
