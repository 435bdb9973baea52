"""SPEC §5 forwarding (L4396-4523) over real HTTP."""

from __future__ import annotations

import pytest

from tests.factories.api import ApiHarness

ADDRESS = "taro@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{ADDRESS}"


@pytest.fixture
def box(api: ApiHarness) -> ApiHarness:
    api.create_contract("C0001")
    api.create_address("C0001")
    return api


def test_forwarding_is_off_by_default_and_keeps_a_copy(box: ApiHarness) -> None:
    assert box.operator.get(f"{BASE}/forwarding").json() == {
        "enabled": False, "destinations": [], "keep_copy": True}


def test_forwarding_to_three_destinations_without_a_copy(box: ApiHarness) -> None:
    body = {"destinations": ["a@other.example.jp", "b@other.example.jp", "c@Mobile.Example.JP"],
            "keep_copy": False}
    response = box.operator.put(f"{BASE}/forwarding", json=body)
    assert response.status_code == 200, response.text
    expected = {"enabled": True, "keep_copy": False,
                "destinations": ["a@other.example.jp", "b@other.example.jp",
                                 "c@mobile.example.jp"]}
    assert response.json() == expected
    assert box.operator.get(f"{BASE}/forwarding").json() == expected
    row = box.operator.get(BASE).json()["forwarding"]
    assert row == expected


def test_forwarding_refuses_a_fourth_destination(box: ApiHarness) -> None:
    body = {"destinations": [f"u{i}@other.example.jp" for i in range(4)]}
    response = box.operator.put(f"{BASE}/forwarding", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "destinations"
    assert "at most 3" in response.json()["error"]["message"]


def test_forwarding_to_the_address_itself_is_refused(box: ApiHarness) -> None:
    body = {"destinations": ["a@other.example.jp", "TARO@e06.example.net"]}
    response = box.operator.put(f"{BASE}/forwarding", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "destinations[1]"
    assert "cannot forward to the address itself" in error["message"]


def test_forwarding_the_same_destination_twice_is_refused(box: ApiHarness) -> None:
    body = {"destinations": ["a@other.example.jp", "", "A@Other.Example.JP"]}
    response = box.operator.put(f"{BASE}/forwarding", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "destinations[2]"
    assert "entered twice" in response.json()["error"]["message"]


def test_forwarding_destination_must_be_a_mail_address(box: ApiHarness) -> None:
    response = box.operator.put(f"{BASE}/forwarding", json={"destinations": ["other.example.jp"]})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "destinations[0]"
    assert "user@example.jp" in response.json()["error"]["message"]


def test_forwarding_all_blank_turns_it_off(box: ApiHarness) -> None:
    client = box.operator
    client.put(f"{BASE}/forwarding", json={"destinations": ["a@other.example.jp"]})
    response = client.put(f"{BASE}/forwarding", json={"destinations": ["", " ", ""]})
    assert response.json() == {"enabled": False, "destinations": [], "keep_copy": True}
    response = client.put(f"{BASE}/forwarding", json={"destinations": ["a@other.example.jp"]})
    assert response.json()["enabled"] is True
    response = client.put(f"{BASE}/forwarding", json={"destinations": []})
    assert response.json()["enabled"] is False
    assert client.get(BASE).json()["forwarding"]["enabled"] is False


def test_forwarding_can_be_reordered_in_one_put(box: ApiHarness) -> None:
    client = box.operator
    client.put(f"{BASE}/forwarding", json={"destinations": ["a@x.example.jp", "b@x.example.jp"]})
    response = client.put(f"{BASE}/forwarding",
                          json={"destinations": ["b@x.example.jp", "a@x.example.jp"]})
    assert response.status_code == 200, response.text
    assert response.json()["destinations"] == ["b@x.example.jp", "a@x.example.jp"]
