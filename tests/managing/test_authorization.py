"""SPEC §10 roles: operator, portal, customer (own contract, optional mailbox scope)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.factories.api import ApiHarness


@dataclass
class World:
    api: ApiHarness
    operator: httpx.Client
    portal: httpx.Client
    customer: httpx.Client
    mailbox: httpx.Client
    other_customer: httpx.Client
    anonymous: httpx.Client
    bad_key: httpx.Client


MINE = "C0001"
THEIRS = "C0002"
MY_ADDRESS = "taro@e06.example.net"
MY_OTHER_ADDRESS = "jiro@e06.example.net"


@pytest.fixture
def world(api: ApiHarness) -> World:
    api.create_contract(MINE)
    api.create_contract(THEIRS)
    api.create_address(MINE, "taro", "e06")
    api.create_address(MINE, "jiro", "e06")
    api.create_address(THEIRS, "hanako", "e06")
    return World(
        api=api,
        operator=api.operator,
        portal=api.client(api.create_key("portal")),
        customer=api.client(api.create_key("customer", MINE)),
        mailbox=api.client(api.create_key("customer", MINE, MY_ADDRESS)),
        other_customer=api.client(api.create_key("customer", THEIRS)),
        anonymous=api.client(),
        bad_key=api.client("mpk_000000000000_not-a-real-secret"),
    )


def test_no_key_or_a_wrong_key_is_401(world: World) -> None:
    for client in (world.anonymous, world.bad_key):
        response = client.get(f"/v1/contracts/{MINE}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def test_operator_and_portal_read_any_contract(world: World) -> None:
    for client in (world.operator, world.portal):
        assert client.get(f"/v1/contracts/{MINE}").status_code == 200
        assert client.get(f"/v1/contracts/{THEIRS}/addresses").status_code == 200


def test_customer_reads_only_its_own_contract(world: World) -> None:
    assert world.customer.get(f"/v1/contracts/{MINE}").status_code == 200
    rows = world.customer.get(f"/v1/contracts/{MINE}/addresses").json()["addresses"]
    assert {r["address"] for r in rows} == {MY_ADDRESS, MY_OTHER_ADDRESS}


def test_other_customer_gets_404_without_a_hint(world: World) -> None:
    existing = world.other_customer.get(f"/v1/contracts/{MINE}")
    missing = world.other_customer.get("/v1/contracts/C9999")
    assert existing.status_code == missing.status_code == 404
    assert existing.json() == missing.json()
    for path in (
        f"/v1/contracts/{MINE}/addresses",
        f"/v1/contracts/{MINE}/addresses/{MY_ADDRESS}",
        f"/v1/contracts/{MINE}/audit",
        f"/v1/contracts/{MINE}/subdomain-candidates?local_part=taro",
    ):
        assert world.other_customer.get(path).status_code == 404, path
    assert world.other_customer.post(
        f"/v1/contracts/{MINE}/addresses/{MY_ADDRESS}/password/reissue").status_code == 404
    assert world.other_customer.delete(
        f"/v1/contracts/{MINE}/addresses/{MY_ADDRESS}").status_code == 404


def test_customer_cannot_reach_another_contracts_address_through_its_own_contract(
    world: World,
) -> None:
    response = world.customer.get(f"/v1/contracts/{MINE}/addresses/hanako@e06.example.net")
    assert response.status_code == 404


def test_mailbox_key_sees_only_its_address(world: World) -> None:
    rows = world.mailbox.get(f"/v1/contracts/{MINE}/addresses").json()["addresses"]
    assert [r["address"] for r in rows] == [MY_ADDRESS]
    assert world.mailbox.get(
        f"/v1/contracts/{MINE}/addresses/{MY_OTHER_ADDRESS}").status_code == 404
    assert world.mailbox.post(
        f"/v1/contracts/{MINE}/addresses/{MY_ADDRESS}/password/reissue").status_code == 200
    # Creating or deleting addresses is a contract-level action.
    create = world.mailbox.post(f"/v1/contracts/{MINE}/addresses",
                                json={"local_part": "saburo", "subdomain": "e06",
                                      "accept_terms": True})
    assert create.status_code == 403
    assert world.mailbox.delete(
        f"/v1/contracts/{MINE}/addresses/{MY_ADDRESS}").status_code == 403


def test_only_operators_create_contracts_and_keys_and_change_contracts(world: World) -> None:
    body = {"customer_number": "C0003", "contact_email": "c3@contact.example.jp"}
    for client in (world.portal, world.customer):
        assert client.post("/v1/contracts", json=body).status_code == 403
        assert client.post("/v1/api-keys", json={"role": "operator"}).status_code == 403
    assert world.portal.patch(f"/v1/contracts/{MINE}",
                              json={"status": "suspended"}).status_code == 403
    assert world.customer.patch(f"/v1/contracts/{MINE}",
                                json={"status": "suspended"}).status_code == 403
    assert world.other_customer.patch(f"/v1/contracts/{MINE}",
                                      json={"status": "suspended"}).status_code == 404
    assert world.operator.post("/v1/contracts", json=body).status_code == 201


def test_portal_and_customer_create_addresses(world: World) -> None:
    for client, local in ((world.portal, "portal1"), (world.customer, "cust1")):
        response = client.post(f"/v1/contracts/{MINE}/addresses",
                               json={"local_part": local, "subdomain": "e06",
                                     "accept_terms": True})
        assert response.status_code == 201, response.text


def test_audit_records_actor_and_never_a_secret(world: World) -> None:
    reissued = world.customer.post(
        f"/v1/contracts/{MINE}/addresses/{MY_ADDRESS}/password/reissue").json()
    audit = world.customer.get(f"/v1/contracts/{MINE}/audit").json()
    actions = [e["action"] for e in audit["entries"]]
    assert "address.password_reissue" in actions
    assert "address.create" in actions
    assert all(e["actor"].split(":")[0] in ("operator", "customer", "portal", "cli")
               for e in audit["entries"])
    assert reissued["password"] not in str(audit)
    # The other contract's audit shows none of this contract's changes.
    theirs = world.operator.get(f"/v1/contracts/{THEIRS}/audit").json()
    assert all(e["address"] != MY_ADDRESS for e in theirs["entries"])


def test_generated_api_keys_are_stored_only_as_keyed_digests(world: World) -> None:
    """The secret is never stored: only its keyed SHA-256 (256 random bits need no argon2,
    and argon2 per wrong key was a CPU flood; issue 15).  Pre-0005 argon2 keys:
    tests/api/test_api_keys_lifecycle.py."""
    from sqlalchemy import select

    from mailplane.auth.api_keys import key_digest
    from mailplane.storage.models import ApiKey

    key = world.api.create_key("portal")
    key_id, secret = key.removeprefix("mpk_").split("_", 1)
    with world.api.session_factory() as session:
        rows = session.execute(select(ApiKey.key_id, ApiKey.secret_digest,
                                      ApiKey.secret_hash)).all()
    assert (key_id, key_digest(key_id, secret), None) in rows
    assert all(secret not in str(row) for row in rows)


def test_errors_use_the_spec_error_shape(world: World) -> None:
    response = world.operator.post("/v1/contracts", json={"customer_number": "bad number!"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "field"}
    unknown = world.operator.get("/v1/nowhere")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"


def test_me_tells_a_key_its_own_scope(world: World) -> None:
    assert world.customer.get("/v1/me").json() == {"role": "customer", "contract": MINE,
                                                   "address": None}
    assert world.mailbox.get("/v1/me").json() == {"role": "customer", "contract": MINE,
                                                  "address": MY_ADDRESS}
    assert world.portal.get("/v1/me").json()["role"] == "portal"
    assert world.anonymous.get("/v1/me").status_code == 401
