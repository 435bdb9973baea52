"""Contracts: creation, quota view, paid slots, suspension (SPEC §1, §10, §11)."""

from __future__ import annotations

from tests.factories.api import ApiHarness


def test_contract_defaults_to_five_included_addresses(api: ApiHarness) -> None:
    created = api.create_contract("C0001")
    assert created["quota"] == {"contracted": 5, "used": 0, "included": 5, "extra": 0}
    assert created["status"] == "active"


def test_duplicate_customer_number_is_409(api: ApiHarness) -> None:
    api.create_contract("C0001")
    response = api.operator.post("/v1/contracts", json={"customer_number": "C0001",
                                                         "contact_email": "x@example.jp"})
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "customer_number"


def test_contact_email_is_validated(api: ApiHarness) -> None:
    response = api.operator.post("/v1/contracts", json={"customer_number": "C0001",
                                                         "contact_email": "not-an-address"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "contact_email"


def test_operator_adds_paid_slots_and_cannot_go_below_used(api: ApiHarness) -> None:
    api.create_contract("C0001", included_addresses=1)
    api.create_address("C0001", "taro", "e06")
    up = api.operator.patch("/v1/contracts/C0001", json={"extra_slots": 2})
    assert up.json()["quota"] == {"contracted": 3, "used": 1, "included": 1, "extra": 2}
    api.create_address("C0001", "jiro", "e06")
    api.create_address("C0001", "saburo", "e06")
    down = api.operator.patch("/v1/contracts/C0001", json={"extra_slots": 0})
    assert down.status_code == 422
    assert down.json()["error"]["field"] == "extra_slots"


def test_suspending_a_contract_bumps_the_policy_revision(api: ApiHarness) -> None:
    from mailplane.storage.policy_loader import load_snapshot, read_revision

    api.create_contract("C0001")
    api.create_address("C0001", "taro", "e06")
    with api.session_factory() as session:
        before = read_revision(session)
    assert api.operator.patch("/v1/contracts/C0001",
                              json={"status": "suspended"}).status_code == 200
    with api.session_factory() as session:
        assert read_revision(session) > before
        snapshot = load_snapshot(session, ("example.net",))
    policy = snapshot.lookup("taro@e06.example.net")
    assert policy is not None and policy.status == "suspended"
    assert not policy.accepts_logins
