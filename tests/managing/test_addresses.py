"""SPEC §1 address rules, over HTTP against the running API."""

from __future__ import annotations

import pytest

from mailplane.auth.passwords import REISSUE_ALPHABET
from tests.factories.api import ApiHarness


@pytest.fixture
def contract(api: ApiHarness) -> str:
    api.create_contract("C0001")
    return "C0001"


def _create(api: ApiHarness, contract: str, **body: object) -> tuple[int, dict[str, object]]:
    payload = {"local_part": "taro", "subdomain": "e06", "virus_check": True,
               "accept_terms": True, **body}
    response = api.operator.post(f"/v1/contracts/{contract}/addresses", json=payload)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("local_part", "rule"),
    [
        ("ab", "must be 3-20 characters"),
        ("a" * 21, "must be 3-20 characters"),
        ("Taro", "upper case letters are not allowed"),
        ("-taro", "cannot start with -"),
        ("_taro", "cannot start with _"),
        ("taro-", "cannot end with -"),
        ("ta.ro", "may contain only a-z, 0-9, - and _"),
        ("tarō", "only half-width characters can be used"),
        ("ｔａｒｏ", "only half-width characters can be used"),
    ],
)
def test_local_part_rules_refuse_with_the_manuals_wording(
    api: ApiHarness, contract: str, local_part: str, rule: str
) -> None:
    status, body = _create(api, contract, local_part=local_part)
    assert status == 422
    error = body["error"]
    assert isinstance(error, dict)
    assert error["field"] == "local_part"
    assert rule in str(error["message"])


@pytest.mark.parametrize("local_part", ["abc", "taro_1", "a-b", "x" * 20, "123"])
def test_local_part_rules_accept_valid_names(api: ApiHarness, contract: str,
                                             local_part: str) -> None:
    status, body = _create(api, contract, local_part=local_part)
    assert status == 201, body


def test_subdomain_must_match_the_pattern(api: ApiHarness, contract: str) -> None:
    status, body = _create(api, contract, subdomain="e10")
    assert status == 422
    assert body["error"]["field"] == "subdomain"  # type: ignore[index]
    assert _create(api, contract, subdomain="z09")[0] == 201


def test_terms_must_be_accepted(api: ApiHarness, contract: str) -> None:
    status, body = _create(api, contract, accept_terms=False)
    assert status == 422
    assert body["error"]["field"] == "accept_terms"  # type: ignore[index]


def test_the_same_full_address_cannot_be_registered_twice(api: ApiHarness, contract: str) -> None:
    assert _create(api, contract)[0] == 201
    status, body = _create(api, contract)
    assert status == 409
    assert body["error"]["code"] == "address_taken"  # type: ignore[index]
    # Uniqueness is per full address: another subdomain is fine.
    assert _create(api, contract, subdomain="e07")[0] == 201


def test_initial_password_and_pop_account_are_generated_and_shown_once(
    api: ApiHarness, contract: str
) -> None:
    status, body = _create(api, contract)
    assert status == 201
    pop_account = body["pop_account"]
    assert isinstance(pop_account, str) and pop_account.startswith("m") and len(pop_account) == 8
    issued = body["initial_password"]
    assert isinstance(issued, dict)
    assert len(issued["password"]) >= 10
    assert set(issued["password"]) <= set(REISSUE_ALPHABET)
    row = api.operator.get(f"/v1/contracts/{contract}/addresses/taro@e06.example.net").json()
    assert "password" not in row
    assert row["pop_account"] == pop_account


def test_sixth_address_needs_accept_charge_and_names_the_monthly_charge(
    api: ApiHarness, contract: str
) -> None:
    for sub in ("a00", "a01", "a02", "a03", "a04"):
        assert _create(api, contract, subdomain=sub)[0] == 201
    status, body = _create(api, contract, subdomain="a05")
    assert status == 409
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "charge_required"
    assert "330 yen" in str(error["message"])
    status, body = _create(api, contract, subdomain="a05", accept_charge=True)
    assert status == 201
    assert body["quota"] == {"contracted": 6, "used": 6, "included": 5, "extra": 1}
    contract_view = api.operator.get(f"/v1/contracts/{contract}").json()
    assert contract_view["quota"] == {"contracted": 6, "used": 6, "included": 5, "extra": 1}


def test_idempotency_key_returns_the_first_result_password_included(
    api: ApiHarness, contract: str
) -> None:
    """Issue 14: the replay is the first response, initial password included (a double
    click must not leave the customer without the password shown once)."""
    url = f"/v1/contracts/{contract}/addresses"
    payload = {"local_part": "hanako", "subdomain": "b03", "virus_check": True,
               "accept_terms": True}
    headers = {"Idempotency-Key": "click-1"}
    first = api.operator.post(url, json=payload, headers=headers)
    second = api.operator.post(url, json=payload, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json()["address"] == second.json()["address"]
    assert first.json()["initial_password"]["password"]
    assert second.json() == first.json()
    listing = api.operator.get(url).json()
    assert [row["address"] for row in listing["addresses"]] == ["hanako@b03.example.net"]
    # The same key with a different request is refused, not silently replayed.
    other = api.operator.post(url, json={**payload, "subdomain": "b04"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_mismatch"


def test_subdomain_candidates_are_three_free_ones_per_page(api: ApiHarness,
                                                           contract: str) -> None:
    url = f"/v1/contracts/{contract}/subdomain-candidates"
    page1 = api.operator.get(url, params={"local_part": "taro"}).json()
    page2 = api.operator.get(url, params={"local_part": "taro", "page": 2}).json()
    subs1 = [c["subdomain"] for c in page1["candidates"]]
    subs2 = [c["subdomain"] for c in page2["candidates"]]
    assert len(subs1) == len(subs2) == 3
    assert not set(subs1) & set(subs2)
    assert page1["has_more"] is True
    for sub in subs1 + subs2:
        assert len(sub) == 3 and sub[0].isalpha() and sub[1] == "0" and sub[2].isdigit()
    # Taking a candidate removes it from the offer.
    assert _create(api, contract, subdomain=subs1[0])[0] == 201
    again = api.operator.get(url, params={"local_part": "taro"}).json()
    assert subs1[0] not in [c["subdomain"] for c in again["candidates"]]
    # ...but only for that local part.
    other = api.operator.get(url, params={"local_part": "jiro"}).json()
    assert len(other["candidates"]) == 3


def test_subdomain_candidates_check_the_local_part(api: ApiHarness, contract: str) -> None:
    response = api.operator.get(f"/v1/contracts/{contract}/subdomain-candidates",
                                params={"local_part": "Taro"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "local_part"


def test_password_change_needs_the_current_password(api: ApiHarness, contract: str) -> None:
    _status, body = _create(api, contract)
    current = body["initial_password"]["password"]  # type: ignore[index]
    url = f"/v1/contracts/{contract}/addresses/taro@e06.example.net/password"
    wrong = api.operator.post(url, json={"current": "wrong-pass", "new": "New.pass1"})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["field"] == "current"
    ok = api.operator.post(url, json={"current": current, "new": "New.pass1"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["changed_on"] == "2026/11/23"


@pytest.mark.parametrize(
    ("new", "rule"),
    [("abcd", "must be 5-32 characters"),
     ("a" * 33, "33 characters were entered; a password can have at most 32"),
     ("abc@def", "cannot contain @"), ("abc def", "may contain only"),
     ("ｐａｓｓｗｏｒｄ", "only half-width characters can be used")],
)
def test_password_rules(api: ApiHarness, contract: str, new: str, rule: str) -> None:
    _status, body = _create(api, contract)
    current = body["initial_password"]["password"]  # type: ignore[index]
    response = api.operator.post(
        f"/v1/contracts/{contract}/addresses/taro@e06.example.net/password",
        json={"current": current, "new": new},
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "new"
    assert rule in response.json()["error"]["message"]


def test_reissue_returns_a_new_password_with_katakana_reading_once(
    api: ApiHarness, contract: str
) -> None:
    _status, body = _create(api, contract)
    old = body["initial_password"]["password"]  # type: ignore[index]
    url = f"/v1/contracts/{contract}/addresses/taro@e06.example.net/password/reissue"
    response = api.operator.post(url)
    assert response.status_code == 200
    data = response.json()
    assert data["password"] != old and len(data["password"]) >= 10
    assert not set(data["password"]) & set("0O1lIcCsSuUvVwWxXzZkKpPjJyYo")
    assert len(data["reading"]) == len(data["password"])
    for char, item in zip(data["password"], data["reading"], strict=True):
        assert item["char"] == char
        assert item["upper"] == char.isupper()
        assert item["reading"]
    assert data["changed_on"] == "2026/11/23"
    # The old password no longer works for a change; the new one does.
    change = f"/v1/contracts/{contract}/addresses/taro@e06.example.net/password"
    assert api.operator.post(change, json={"current": old, "new": "Other.1"}).status_code == 422
    assert api.operator.post(change, json={"current": data["password"],
                                           "new": "Other.1"}).status_code == 200


def test_delete_purges_and_the_address_cannot_be_taken_again_during_cooloff(
    api: ApiHarness, contract: str
) -> None:
    assert _create(api, contract)[0] == 201
    mailbox = api.settings.maildir_root / "e06.example.net" / "taro" / "new"
    mailbox.mkdir(parents=True)
    (mailbox / "1.msg").write_bytes(b"Subject: hi\r\n\r\nhello\r\n")
    response = api.operator.delete(f"/v1/contracts/{contract}/addresses/taro@e06.example.net")
    assert response.status_code == 204
    assert not mailbox.exists()
    assert api.operator.get(
        f"/v1/contracts/{contract}/addresses/taro@e06.example.net").status_code == 404
    status, body = _create(api, contract)
    assert status == 409
    assert body["error"]["code"] == "address_taken"  # type: ignore[index]


def test_suspended_contract_cannot_register_addresses(api: ApiHarness, contract: str) -> None:
    assert api.operator.patch(f"/v1/contracts/{contract}",
                              json={"status": "suspended"}).status_code == 200
    status, body = _create(api, contract)
    assert status == 409
    assert body["error"]["code"] == "contract_suspended"  # type: ignore[index]
