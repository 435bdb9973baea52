"""SPEC §4 deny list and allow list (L4233-4392) over real HTTP."""

from __future__ import annotations

import pytest

from tests.factories.api import ApiFactory, ApiHarness

ADDRESS = "taro@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{ADDRESS}"
NO_CONDITIONS = {"no_from": False, "angle_from": False, "blank_from": False,
                 "no_subject": False, "blank_subject": False}


@pytest.fixture
def box(api: ApiHarness) -> ApiHarness:
    api.create_contract("C0001")
    api.create_address("C0001")
    return api


def test_deny_list_is_empty_with_every_condition_off_by_default(box: ApiHarness) -> None:
    assert box.operator.get(f"{BASE}/deny-list").json() == {
        "addresses": [], "subjects": [], "conditions": NO_CONDITIONS}


def test_deny_list_accepts_the_manuals_correct_examples(box: ApiHarness) -> None:
    conditions = {**NO_CONDITIONS, "no_from": True, "blank_subject": True}
    body = {
        "addresses": ["tarou@01.hogehoge.jp", "abc123.jp", "123.jp", "@spam.example"],
        "subjects": ["広告", "未承諾", "violence", "viol"],
        "conditions": conditions,
    }
    response = box.operator.put(f"{BASE}/deny-list", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == body
    assert box.operator.get(f"{BASE}/deny-list").json() == body


def test_deny_list_entry_without_at_or_dot_is_refused_naming_its_index(
    box: ApiHarness,
) -> None:
    body = {"addresses": ["abc123.jp", "123.jp", "tarou"]}
    response = box.operator.put(f"{BASE}/deny-list", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "addresses[2]"
    assert "`tarou`: has no effect — enter user@host, @domain or domain.tld" in error["message"]
    assert box.operator.get(f"{BASE}/deny-list").json()["addresses"] == []


def test_deny_list_addresses_are_trimmed_lowered_deduplicated_and_blanks_dropped(
    box: ApiHarness,
) -> None:
    body = {"addresses": ["  Tarou@01.HogeHoge.JP ", "", "   ", "tarou@01.hogehoge.jp",
                          "ＡＢＣ１２３．ｊｐ"]}
    response = box.operator.put(f"{BASE}/deny-list", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["addresses"] == ["tarou@01.hogehoge.jp", "abc123.jp"]


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("taro yamada@example.jp", "cannot contain spaces"),
        ("@", "has no effect"),
        ("ta..ro@example.jp", "is not a mail address"),
        ("exa!mple.jp", "a domain may contain only"),
    ],
)
def test_deny_list_refuses_entries_that_cannot_match(
    box: ApiHarness, entry: str, rule: str
) -> None:
    response = box.operator.put(f"{BASE}/deny-list", json={"addresses": [entry]})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "addresses[0]"
    assert rule in response.json()["error"]["message"]


def test_deny_list_subject_of_one_full_width_character_is_refused(box: ApiHarness) -> None:
    response = box.operator.put(f"{BASE}/deny-list", json={"subjects": ["未承諾", "広"]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "subjects[1]"
    assert "a single full-width character alone has no effect" in error["message"]


def test_deny_list_subject_half_width_katakana_is_stored_full_width(box: ApiHarness) -> None:
    body = {"subjects": ["ｾｰﾙ", "セール", "ﾌﾚﾝﾄﾞ", "VIOL", "viol"]}
    response = box.operator.put(f"{BASE}/deny-list", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["subjects"] == ["セール", "フレンド", "VIOL"]


def test_deny_list_single_half_width_katakana_becomes_one_full_width_char_and_is_refused(
    box: ApiHarness,
) -> None:
    response = box.operator.put(f"{BASE}/deny-list", json={"subjects": ["ｱ"]})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "subjects[0]"


def test_deny_list_limits_entry_count_and_length(api_factory: ApiFactory) -> None:
    api = api_factory(addresses={"max_list_entries": 3, "max_entry_length": 20})
    api.create_contract("C0001")
    api.create_address("C0001")
    four = {"addresses": ["a.jp", "b.jp", "c.jp", "d.jp"]}
    response = api.operator.put(f"{BASE}/deny-list", json=four)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "addresses"
    assert "at most 3 entries" in response.json()["error"]["message"]
    # Duplicates do not count towards the limit.
    three = {"addresses": ["a.jp", "b.jp", "c.jp", "A.JP"]}
    assert api.operator.put(f"{BASE}/deny-list", json=three).status_code == 200
    long_subject = {"subjects": ["x" * 21]}
    response = api.operator.put(f"{BASE}/deny-list", json=long_subject)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "subjects[0]"
    assert "at most 20 characters" in response.json()["error"]["message"]


def test_deny_list_put_replaces_the_whole_list(box: ApiHarness) -> None:
    client = box.operator
    client.put(f"{BASE}/deny-list", json={"addresses": ["a.jp"], "subjects": ["広告"],
                                          "conditions": {"no_from": True}})
    response = client.put(f"{BASE}/deny-list", json={"addresses": ["b.jp"]})
    assert response.json() == {"addresses": ["b.jp"], "subjects": [],
                               "conditions": NO_CONDITIONS}


def test_deny_list_refuses_an_unknown_condition(box: ApiHarness) -> None:
    response = box.operator.put(f"{BASE}/deny-list", json={"conditions": {"no_body": True}})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "conditions.no_body"


def test_allow_list_uses_the_same_address_rules(box: ApiHarness) -> None:
    client = box.operator
    response = client.put(f"{BASE}/allow-list",
                          json={"addresses": ["Friend@Example.JP", "123.jp", "@partner.jp"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"addresses": ["friend@example.jp", "123.jp", "@partner.jp"]}
    refused = client.put(f"{BASE}/allow-list", json={"addresses": ["123.jp", "tarou"]})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "addresses[1]"
    assert "has no effect" in refused.json()["error"]["message"]
    assert client.get(f"{BASE}/allow-list").json()["addresses"] == [
        "friend@example.jp", "123.jp", "@partner.jp"]


def test_allow_and_deny_lists_are_separate(box: ApiHarness) -> None:
    client = box.operator
    client.put(f"{BASE}/allow-list", json={"addresses": ["friend.jp"]})
    client.put(f"{BASE}/deny-list", json={"addresses": ["enemy.jp"]})
    assert client.get(f"{BASE}/allow-list").json()["addresses"] == ["friend.jp"]
    assert client.get(f"{BASE}/deny-list").json()["addresses"] == ["enemy.jp"]
