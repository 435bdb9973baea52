"""Who may change which setting (SPEC §10) and what every change leaves behind (SPEC §9)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mailplane.storage.models import PolicyRevision
from tests.factories.api import ApiHarness

ADDRESS = "taro@e06.example.net"
OTHER = "hanako@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{ADDRESS}"

VALID_PUTS: dict[str, dict[str, Any]] = {
    "virus-check": {"enabled": False},
    "spam": {"judge": True, "quarantine": True, "notify": False},
    "deny-list": {"addresses": ["spam.example"], "subjects": ["未承諾"],
                  "conditions": {"no_from": True}},
    "allow-list": {"addresses": ["friend@example.jp"]},
    "forwarding": {"destinations": ["taro@mobile.example.jp"], "keep_copy": True},
    "auto-reply": {"enabled": True, "default_message": "不在です"},
    "overseas": {"enabled": True},
}
ADMIN_ONLY = ["virus-check", "spam", "deny-list", "allow-list", "overseas"]
MAILBOX_ALLOWED = ["forwarding", "auto-reply"]


@pytest.fixture
def box(api: ApiHarness) -> ApiHarness:
    api.create_contract("C0001")
    api.create_address("C0001")
    api.create_address("C0001", local_part="hanako")
    return api


def _revision(api: ApiHarness) -> int:
    with api.session_factory() as session:
        return int(session.scalar(select(PolicyRevision.revision)) or 0)


@pytest.mark.parametrize("setting", list(VALID_PUTS))
def test_every_settings_write_bumps_the_policy_revision_and_is_audited(
    box: ApiHarness, setting: str
) -> None:
    before = _revision(box)
    response = box.operator.put(f"{BASE}/{setting}", json=VALID_PUTS[setting])
    assert response.status_code == 200, response.text
    assert _revision(box) == before + 1
    entries = box.operator.get("/v1/contracts/C0001/audit").json()["entries"]
    action = "settings." + setting.replace("-", "_")
    mine = [e for e in entries if e["action"] == action]
    assert len(mine) == 1
    assert mine[0]["address"] == ADDRESS
    assert mine[0]["actor"].startswith("operator:")
    assert "mpk_" not in str(mine[0]) and "password" not in str(mine[0])


def test_a_refused_write_changes_nothing_and_is_not_audited(box: ApiHarness) -> None:
    before = _revision(box)
    response = box.operator.put(f"{BASE}/spam", json={"judge": False, "notify": True})
    assert response.status_code == 422
    assert _revision(box) == before
    entries = box.operator.get("/v1/contracts/C0001/audit").json()["entries"]
    assert not [e for e in entries if e["action"] == "settings.spam"]


def test_mailbox_key_changes_its_own_forwarding_and_auto_reply(box: ApiHarness) -> None:
    mailbox = box.client(box.create_key("customer", "C0001", ADDRESS))
    for setting in MAILBOX_ALLOWED:
        response = mailbox.put(f"{BASE}/{setting}", json=VALID_PUTS[setting])
        assert response.status_code == 200, (setting, response.text)
        assert mailbox.get(f"{BASE}/{setting}").status_code == 200
    entries = mailbox.get("/v1/contracts/C0001/audit").json()["entries"]
    assert {e["action"] for e in entries} >= {"settings.forwarding", "settings.auto_reply"}
    assert all(e["actor"].startswith("customer:") for e in entries
               if e["action"].startswith("settings."))


@pytest.mark.parametrize("setting", ADMIN_ONLY)
def test_mailbox_key_may_not_change_filter_settings(box: ApiHarness, setting: str) -> None:
    mailbox = box.client(box.create_key("customer", "C0001", ADDRESS))
    response = mailbox.put(f"{BASE}/{setting}", json=VALID_PUTS[setting])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert mailbox.get(f"{BASE}/{setting}").status_code == 403


def test_mailbox_key_gets_404_on_another_address(box: ApiHarness) -> None:
    mailbox = box.client(box.create_key("customer", "C0001", ADDRESS))
    other = f"/v1/contracts/C0001/addresses/{OTHER}"
    for setting, body in VALID_PUTS.items():
        assert mailbox.put(f"{other}/{setting}", json=body).status_code == 404, setting
        assert mailbox.get(f"{other}/{setting}").status_code == 404, setting


def test_contract_key_changes_every_setting_of_its_addresses(box: ApiHarness) -> None:
    customer = box.client(box.create_key("customer", "C0001"))
    for setting, body in VALID_PUTS.items():
        response = customer.put(f"/v1/contracts/C0001/addresses/{OTHER}/{setting}", json=body)
        assert response.status_code == 200, (setting, response.text)


def test_another_contracts_key_gets_404_on_every_setting(box: ApiHarness) -> None:
    box.create_contract("C0002")
    stranger = box.client(box.create_key("customer", "C0002"))
    missing = "/v1/contracts/C0001/addresses/nobody@e06.example.net"
    for setting, body in VALID_PUTS.items():
        for base in (BASE, missing):
            put = stranger.put(f"{base}/{setting}", json=body)
            assert put.status_code == 404, (setting, put.text)
            assert stranger.get(f"{base}/{setting}").status_code == 404
            # The same answer whether the address exists or not.
            assert put.json() == stranger.put(f"{missing}/{setting}", json=body).json()
    assert box.operator.get(f"{BASE}/virus-check").json() == {"enabled": True}


def test_settings_calls_need_a_key(box: ApiHarness) -> None:
    anonymous = box.client()
    assert anonymous.put(f"{BASE}/virus-check", json={"enabled": False}).status_code == 401
