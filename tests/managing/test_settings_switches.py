"""SPEC §3, §4 (spam switches), §7 (overseas window) and §8 (quota) over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories.api import ApiHarness

ADDRESS = "taro@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{ADDRESS}"


@pytest.fixture
def box(api: ApiHarness) -> ApiHarness:
    api.create_contract("C0001")
    api.create_address("C0001")
    return api


def test_virus_check_turns_off_and_on_and_shows_in_the_settings_row(box: ApiHarness) -> None:
    client = box.operator
    assert client.get(f"{BASE}/virus-check").json() == {"enabled": True}
    response = client.put(f"{BASE}/virus-check", json={"enabled": False})
    assert response.status_code == 200, response.text
    assert response.json() == {"enabled": False}
    assert client.get(f"{BASE}/virus-check").json() == {"enabled": False}
    assert client.get(BASE).json()["virus_check"] is False


def test_virus_check_refuses_a_missing_or_non_boolean_value(box: ApiHarness) -> None:
    response = box.operator.put(f"{BASE}/virus-check", json={})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "enabled"
    response = box.operator.put(f"{BASE}/virus-check", json={"enabled": "maybe"})
    assert response.status_code == 422


def test_spam_switches_default_off_and_all_three_can_be_on(box: ApiHarness) -> None:
    client = box.operator
    off = {"judge": False, "quarantine": False, "notify": False}
    assert client.get(f"{BASE}/spam").json() == off
    on = {"judge": True, "quarantine": True, "notify": True}
    response = client.put(f"{BASE}/spam", json=on)
    assert response.status_code == 200, response.text
    assert response.json() == on
    assert client.get(BASE).json()["spam"] == on
    assert client.put(f"{BASE}/spam", json=off).json() == off


@pytest.mark.parametrize("switch", ["quarantine", "notify"])
def test_spam_quarantine_and_notify_need_judge_on(box: ApiHarness, switch: str) -> None:
    response = box.operator.put(f"{BASE}/spam", json={"judge": False, switch: True})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == switch
    assert "can be ON only while judge is ON" in error["message"]
    assert box.operator.get(f"{BASE}/spam").json()[switch] is False


def test_spam_judge_alone_is_allowed(box: ApiHarness) -> None:
    response = box.operator.put(f"{BASE}/spam", json={"judge": True})
    assert response.json() == {"judge": True, "quarantine": False, "notify": False}


def test_overseas_on_shows_the_end_date_in_tokyo(box: ApiHarness) -> None:
    # 16:00 UTC on the 23rd is already the 24th in Tokyo; a week later the UTC date is the
    # 30th but the Tokyo date is 2026/12/01.
    box.clock.set(datetime(2026, 11, 23, 16, 0, tzinfo=UTC))
    client = box.operator
    assert client.get(f"{BASE}/overseas").json()["display"] == "OFF"
    response = client.put(f"{BASE}/overseas", json={"enabled": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] is True
    assert body["display"] == "ON until 2026/12/01"
    assert datetime.fromisoformat(body["expires_at"]) == datetime(2026, 11, 30, 16, 0,
                                                                   tzinfo=UTC)
    assert client.get(BASE).json()["overseas"]["display"] == "ON until 2026/12/01"


def test_overseas_off_clears_the_window(box: ApiHarness) -> None:
    client = box.operator
    client.put(f"{BASE}/overseas", json={"enabled": True})
    response = client.put(f"{BASE}/overseas", json={"enabled": False})
    assert response.json() == {"enabled": False, "expires_at": None, "display": "OFF"}
    assert client.get(f"{BASE}/overseas").json()["enabled"] is False


def test_overseas_on_again_after_off_restarts_the_week(box: ApiHarness) -> None:
    box.clock.set(datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    client = box.operator
    client.put(f"{BASE}/overseas", json={"enabled": True})
    box.clock.advance(timedelta(days=3))
    client.put(f"{BASE}/overseas", json={"enabled": False})
    response = client.put(f"{BASE}/overseas", json={"enabled": True})
    assert response.json()["display"] == "ON until 2026/12/03"
    assert datetime.fromisoformat(response.json()["expires_at"]) == datetime(
        2026, 12, 3, 3, 0, tzinfo=UTC)


def test_overseas_on_while_on_keeps_the_running_week(box: ApiHarness) -> None:
    box.clock.set(datetime(2026, 11, 23, 3, 0, tzinfo=UTC))
    client = box.operator
    first = client.put(f"{BASE}/overseas", json={"enabled": True}).json()
    box.clock.advance(timedelta(days=2))
    again = client.put(f"{BASE}/overseas", json={"enabled": True}).json()
    assert again == first
    assert again["display"] == "ON until 2026/11/30"


def test_overseas_returns_to_off_by_itself_after_the_week(box: ApiHarness) -> None:
    client = box.operator
    client.put(f"{BASE}/overseas", json={"enabled": True})
    box.clock.advance(timedelta(days=7, seconds=-1))
    assert client.get(f"{BASE}/overseas").json()["enabled"] is True
    box.clock.advance(timedelta(seconds=1))
    assert client.get(f"{BASE}/overseas").json() == {
        "enabled": False, "expires_at": None, "display": "OFF"}
    assert client.get(BASE).json()["overseas"]["display"] == "OFF"
    # ON after it ran out starts a fresh week from now.
    response = client.put(f"{BASE}/overseas", json={"enabled": True}).json()
    assert response["enabled"] is True
    assert datetime.fromisoformat(response["expires_at"]) == box.clock.now() + timedelta(days=7)


def test_quota_is_one_gigabyte_and_only_an_operator_raises_it(box: ApiHarness) -> None:
    client = box.operator
    assert client.get(f"{BASE}/quota").json() == {"quota_bytes": 1024**3,
                                                  "max_quota_bytes": 10 * 1024**3}
    response = client.put(f"{BASE}/quota", json={"quota_bytes": 5 * 1024**3})
    assert response.status_code == 200, response.text
    assert response.json()["quota_bytes"] == 5 * 1024**3
    audit = client.get("/v1/contracts/C0001/audit").json()["entries"]
    assert [e["detail"] for e in audit if e["action"] == "settings.quota"] == [
        {"quota_bytes": 5 * 1024**3}]
    too_big = client.put(f"{BASE}/quota", json={"quota_bytes": 10 * 1024**3 + 1})
    assert too_big.status_code == 422
    assert too_big.json()["error"]["field"] == "quota_bytes"
    customer = box.client(box.create_key("customer", "C0001"))
    assert customer.get(f"{BASE}/quota").status_code == 200
    assert customer.put(f"{BASE}/quota", json={"quota_bytes": 2 * 1024**3}).status_code == 403
