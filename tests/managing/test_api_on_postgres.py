"""The same API code on the PostgreSQL server: create, list, idempotent replay."""

from __future__ import annotations

from tests.factories.api import ApiFactory


def test_api_flow_on_postgresql(api_factory: ApiFactory, pg_url: str) -> None:
    api = api_factory(database_url=pg_url)
    api.create_contract("C0001")
    url = "/v1/contracts/C0001/addresses"
    body = {"local_part": "taro", "subdomain": "e06", "accept_terms": True}
    first = api.operator.post(url, json=body, headers={"Idempotency-Key": "k1"})
    second = api.operator.post(url, json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()  # password included (issue 14)
    rows = api.operator.get(url).json()["addresses"]
    assert [r["address"] for r in rows] == ["taro@e06.example.net"]
    assert api.operator.post(url, json=body).status_code == 409
