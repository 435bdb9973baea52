"""API keys die with their scope, at once, on every node (issue 15): no per-process cache,
address ids never reused, revocation, the move of pre-0005 argon2 keys to the digest,
and what a customer sees of the ISP's keys in its audit log."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import select

from mailplane.auth.api_keys import new_key_material
from mailplane.auth.passwords import PasswordHashing
from mailplane.storage import api_keys_repo
from mailplane.storage.models import ApiKey
from tests.factories.api import ApiFactory, ApiHarness

ADDRESSES = "/v1/contracts/C0001/addresses"


def _second_node(api: ApiHarness, api_factory: ApiFactory) -> ApiHarness:
    """Another API server on the same database (another node of the cluster)."""
    return api_factory(database_url=api.settings.database_url)


def test_mailbox_key_of_a_deleted_address_dies_at_once_on_every_node(
        any_api: ApiHarness, api_factory: ApiFactory) -> None:
    api = any_api
    other_node = _second_node(api, api_factory)
    api.create_contract("C0001")
    api.create_address("C0001", local_part="keep", subdomain="e05")
    old = api.create_address("C0001", local_part="gone", subdomain="e06")["address"]["address"]
    key = api.create_key("customer", contract="C0001", address=old)
    # Both nodes have verified (and, before, cached) the key.
    for node in (api, other_node):
        assert node.client(key).get(f"{ADDRESSES}/{old}").status_code == 200
    assert api.operator.delete(f"{ADDRESSES}/{old}").status_code == 204
    # A new address is created at once — on SQLite it used to get the deleted one's id.
    new = api.create_address("C0001", local_part="fresh", subdomain="e07")
    new_address = new["address"]["address"]
    for node in (api, other_node):
        client = node.client(key)
        assert client.get("/v1/me").status_code == 401
        assert client.get(f"{ADDRESSES}/{new_address}").status_code == 401
        assert client.post(f"{ADDRESSES}/{new_address}/password/reissue").status_code == 401
    # The new address's password is the one it was created with.
    probe = api.operator.post(f"{ADDRESSES}/{new_address}/password",
                              json={"current": new["initial_password"]["password"],
                                    "new": "Another-123"})
    assert probe.status_code == 200, probe.text


def test_address_ids_are_never_reused(any_api: ApiHarness) -> None:
    from mailplane.storage.models import Address

    api = any_api
    api.create_contract("C0001")
    first = api.create_address("C0001", local_part="first", subdomain="e06")
    with api.session_factory() as session:
        first_id = session.scalar(select(Address.id).where(
            Address.address == first["address"]["address"]))
    assert api.operator.delete(f"{ADDRESSES}/{first['address']['address']}").status_code == 204
    second = api.create_address("C0001", local_part="second", subdomain="e06")
    with api.session_factory() as session:
        second_id = session.scalar(select(Address.id).where(
            Address.address == second["address"]["address"]))
    assert first_id is not None and second_id is not None and second_id > first_id


def test_a_revoked_key_is_refused_at_once_on_every_node(
        any_api: ApiHarness, api_factory: ApiFactory) -> None:
    api = any_api
    other_node = _second_node(api, api_factory)
    api.create_contract("C0001")
    key = api.create_key("customer", contract="C0001")
    key_id = key.removeprefix("mpk_").split("_", 1)[0]
    for node in (api, other_node):
        assert node.client(key).get("/v1/contracts/C0001").status_code == 200
    assert api.client(key).delete(f"/v1/api-keys/{key_id}").status_code == 403
    assert other_node.operator.delete(f"/v1/api-keys/{key_id}").status_code == 204
    for node in (api, other_node):
        assert node.client(key).get("/v1/contracts/C0001").status_code == 401
    assert api.operator.delete(f"/v1/api-keys/{key_id}").status_code == 404
    audit = api.operator.get("/v1/contracts/C0001/audit").json()["entries"]
    assert "api_key.revoke" in [e["action"] for e in audit]


def test_a_key_issued_before_0005_works_and_moves_to_the_digest(any_api: ApiHarness) -> None:
    """Keys stored as argon2 hashes keep working; the first good use stores the digest and
    drops the hash, so later checks (and floods against the key's id) cost no argon2."""
    from mailplane.auth.api_keys import key_digest

    api = any_api
    key_id, secret, key = new_key_material()
    with api.session_factory() as session:
        api_keys_repo.create_api_key(
            session, key_id=key_id, role="operator", now=datetime.now(UTC),
            secret_hash=PasswordHashing(api.settings.security).hash(secret))
        session.commit()
    assert api.client(f"mpk_{key_id}_wrong").get("/v1/me").status_code == 401
    with api.session_factory() as session:
        assert session.scalar(select(ApiKey.secret_digest).where(ApiKey.key_id == key_id)) is None
    assert api.client(key).get("/v1/me").json()["role"] == "operator"
    with api.session_factory() as session:
        row = session.execute(select(ApiKey.secret_digest, ApiKey.secret_hash)
                              .where(ApiKey.key_id == key_id)).one()
    assert tuple(row) == (key_digest(key_id, secret), None)
    assert api.client(key).get("/v1/me").status_code == 200
    assert api.client(f"mpk_{key_id}_wrong").get("/v1/me").status_code == 401


def test_customers_see_the_isps_actors_only_by_role(any_api: ApiHarness) -> None:
    api = any_api
    api.create_contract("C0001")
    api.create_address("C0001")
    customer_key = api.create_key("customer", contract="C0001")
    customer_id = customer_key.removeprefix("mpk_").split("_", 1)[0]
    operator_id = api.operator_key.removeprefix("mpk_").split("_", 1)[0]
    customer = api.client(customer_key)
    assert customer.put(f"{ADDRESSES}/taro@e06.example.net/virus-check",
                        json={"enabled": False}).status_code == 200
    seen = customer.get("/v1/contracts/C0001/audit")
    actors = {e["actor"] for e in seen.json()["entries"]}
    assert actors == {"operator", f"customer:{customer_id}"}
    assert operator_id not in seen.text
    staff_view = {e["actor"] for e in
                  api.operator.get("/v1/contracts/C0001/audit").json()["entries"]}
    assert f"operator:{operator_id}" in staff_view


def test_malformed_and_oversized_keys_are_refused_without_a_500(api: ApiHarness) -> None:
    for token in ("mpk_", "mpk__x", "mpk_abc_", "x" * 5000, "mpk_" + "a" * 40 + "_s",
                  "mpk_abc_" + "s" * 5000, "mpk_\u00e9\u00e9_\u00e9"):
        client = httpx.Client(base_url=api.base_url, timeout=30,
                              headers={"Authorization": f"Bearer {token}".encode()})
        with client:
            response = client.get("/v1/me")
        assert response.status_code == 401, (token[:20], response.text)
