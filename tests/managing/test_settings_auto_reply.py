"""SPEC §6 auto-reply settings (L4525-4637) over real HTTP."""

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


def test_auto_reply_is_off_and_empty_by_default(box: ApiHarness) -> None:
    assert box.operator.get(f"{BASE}/auto-reply").json() == {
        "enabled": False, "special_senders": [], "special_message": "", "default_message": ""}


def test_auto_reply_with_special_senders_and_a_default_message(box: ApiHarness) -> None:
    body = {"enabled": True,
            "special_senders": [" Boss@Company.Example.JP", "", "boss@company.example.jp",
                                "family@example.jp"],
            "special_message": "出張中です。\r\n急ぎは携帯へ。",
            "default_message": "ただいま不在しております。"}
    response = box.operator.put(f"{BASE}/auto-reply", json=body)
    assert response.status_code == 200, response.text
    expected = {"enabled": True,
                "special_senders": ["boss@company.example.jp", "family@example.jp"],
                "special_message": "出張中です。\n急ぎは携帯へ。",
                "default_message": "ただいま不在しております。"}
    assert response.json() == expected
    assert box.operator.get(f"{BASE}/auto-reply").json() == expected
    assert box.operator.get(BASE).json()["auto_reply_enabled"] is True


def test_auto_reply_default_message_alone_is_enough(box: ApiHarness) -> None:
    response = box.operator.put(f"{BASE}/auto-reply",
                                json={"enabled": True, "default_message": "不在です"})
    assert response.status_code == 200, response.text


def test_auto_reply_special_sender_must_be_a_whole_mail_address(box: ApiHarness) -> None:
    body = {"enabled": True, "special_senders": ["boss@company.example.jp", "company.example.jp"],
            "special_message": "hi"}
    response = box.operator.put(f"{BASE}/auto-reply", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "special_senders[1]"
    assert "user@example.jp" in response.json()["error"]["message"]


def test_auto_reply_enabled_without_any_message_is_refused(box: ApiHarness) -> None:
    response = box.operator.put(f"{BASE}/auto-reply",
                                json={"enabled": True, "default_message": "   "})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "default_message"


def test_auto_reply_special_senders_need_the_special_message(box: ApiHarness) -> None:
    body = {"enabled": True, "special_senders": ["boss@company.example.jp"],
            "default_message": "不在です"}
    response = box.operator.put(f"{BASE}/auto-reply", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "special_message"


def test_auto_reply_disabled_keeps_the_texts_as_a_draft(box: ApiHarness) -> None:
    body = {"enabled": False, "special_senders": ["boss@company.example.jp"],
            "special_message": "", "default_message": ""}
    response = box.operator.put(f"{BASE}/auto-reply", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["special_senders"] == ["boss@company.example.jp"]


def test_auto_reply_message_length_is_limited(box: ApiHarness) -> None:
    ok = box.operator.put(f"{BASE}/auto-reply",
                          json={"enabled": True, "default_message": "あ" * 2000})
    assert ok.status_code == 200, ok.text
    response = box.operator.put(f"{BASE}/auto-reply",
                                json={"enabled": True, "default_message": "あ" * 2001})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "default_message"
    assert "at most 2000 characters" in response.json()["error"]["message"]
