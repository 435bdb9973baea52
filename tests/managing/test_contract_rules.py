"""Issue 14, contract and billing rules from the seeds — on SQLite and PostgreSQL:

- deleting an address that used a paid slot frees the slot (004 L474-485);
- a POP password equal to the part of the address before @ is refused (004 L299);
- a suspended contract shows its addresses as suspended (003 Art.16, Art.20(3));
- an operator suspends and resumes one address (a compromised password).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from mailplane.storage.models import OutboundJob
from tests.factories.api import ApiFactory, ApiHarness

CN = "C0001"
BASE = f"/v1/contracts/{CN}/addresses"
SUBDOMAINS = [f"{letter}0{digit}" for letter in "efgh" for digit in range(10)]


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, api_factory: ApiFactory) -> ApiHarness:
    if request.param == "postgresql":
        return api_factory(database_url=request.getfixturevalue("pg_url"))
    return api_factory()


def _body(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


def _quota(api: ApiHarness) -> dict[str, Any]:
    quota: dict[str, Any] = api.operator.get(f"/v1/contracts/{CN}").json()["quota"]
    return quota


def _add(api: ApiHarness, index: int, **extra: Any) -> Any:
    return api.operator.post(BASE, json={"local_part": "taro", "subdomain": SUBDOMAINS[index],
                                         "accept_terms": True, **extra})


def test_deleting_an_address_on_a_paid_slot_frees_it_and_the_next_sixth_asks_again(
    api: ApiHarness,
) -> None:
    api.create_contract(CN)
    for index in range(5):
        assert _add(api, index).status_code == 201
    assert _add(api, 5).json()["error"]["code"] == "charge_required"
    assert _add(api, 5, accept_charge=True).status_code == 201
    assert _quota(api) == {"contracted": 6, "used": 6, "included": 5, "extra": 1}

    assert api.operator.delete(f"{BASE}/taro@e00.example.net").status_code == 204
    assert _quota(api) == {"contracted": 5, "used": 5, "included": 5, "extra": 0}
    again = _add(api, 6)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "charge_required")
    audit = api.operator.get(f"/v1/contracts/{CN}/audit").json()["entries"]
    deleted = [e for e in audit if e["action"] == "address.delete"]
    assert [e["detail"]["paid_slot_freed"] for e in deleted] == [True]


def test_paid_slots_bought_ahead_and_unused_are_kept_when_an_address_goes(
    api: ApiHarness,
) -> None:
    api.create_contract(CN)
    assert api.operator.patch(f"/v1/contracts/{CN}", json={"extra_slots": 2}).status_code == 200
    for index in range(3):
        assert _add(api, index).status_code == 201
    assert api.operator.delete(f"{BASE}/taro@e00.example.net").status_code == 204
    assert _quota(api) == {"contracted": 7, "used": 2, "included": 5, "extra": 2}


def test_parallel_deletions_each_free_their_own_paid_slot(api: ApiHarness) -> None:
    api.create_contract(CN)
    for index in range(15):
        assert _add(api, index, accept_charge=True).status_code == 201
    assert _quota(api)["extra"] == 10
    paid = [f"{BASE}/taro@{SUBDOMAINS[i]}.example.net" for i in range(5, 15)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(lambda url: api.client(api.operator_key).delete(url).status_code,
                              paid))
    assert codes == [204] * 10
    assert _quota(api) == {"contracted": 5, "used": 5, "included": 5, "extra": 0}


@pytest.mark.parametrize("new", ["taro_x", "TARO_X"])
def test_a_pop_password_equal_to_the_local_part_is_refused(api: ApiHarness, new: str) -> None:
    api.create_contract(CN)
    created = api.create_address(CN, local_part="taro_x")
    url = f"{BASE}/taro_x@e06.example.net/password"
    current = created["initial_password"]["password"]
    refused = api.operator.post(url, json={"current": current, "new": new})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "new"
    accepted = api.operator.post(url, json={"current": current, "new": "Kq7-sd:Wm2"})
    assert accepted.status_code == 200


def test_a_suspended_contract_shows_its_addresses_as_suspended(api: ApiHarness) -> None:
    api.create_contract(CN)
    api.create_address(CN)
    assert api.operator.patch(f"/v1/contracts/{CN}", json={"status": "suspended"}
                              ).status_code == 200
    customer = api.client(api.create_key("customer", contract=CN))
    assert [r["status"] for r in customer.get(BASE).json()["addresses"]] == ["suspended"]
    assert customer.get(f"{BASE}/taro@e06.example.net").json()["status"] == "suspended"
    api.operator.patch(f"/v1/contracts/{CN}", json={"status": "active"})
    assert [r["status"] for r in customer.get(BASE).json()["addresses"]] == ["active"]


def test_an_operator_suspends_and_resumes_one_address(api: ApiHarness) -> None:
    api.create_contract(CN)
    api.create_address(CN)
    api.create_address(CN, local_part="hanako")
    url = f"{BASE}/taro@e06.example.net"
    customer = api.client(api.create_key("customer", contract=CN))
    assert customer.patch(url, json={"status": "suspended"}).status_code == 403
    assert api.operator.patch(url, json={"status": "paused"}).status_code == 422

    suspended = api.operator.patch(url, json={"status": "suspended"})
    assert (suspended.status_code, suspended.json()["status"]) == (200, "suspended")
    rows = {r["address"]: r["status"] for r in customer.get(BASE).json()["addresses"]}
    assert rows == {"taro@e06.example.net": "suspended", "hanako@e06.example.net": "active"}
    # Twice is once: one audit entry and one notice per real change.
    assert api.operator.patch(url, json={"status": "suspended"}).status_code == 200
    assert api.operator.patch(url, json={"status": "active"}).json()["status"] == "active"

    audit = api.operator.get(f"/v1/contracts/{CN}/audit").json()["entries"]
    assert sorted(e["action"] for e in audit if e["address"] == "taro@e06.example.net"
                  and e["action"] != "address.create") == ["address.resume", "address.suspend"]
    with api.session_factory() as session:
        notices = session.scalars(select(OutboundJob).where(OutboundJob.kind == "notice")).all()
    texts = [_body(bytes(job.message or b"")) for job in notices]
    assert sum("the address was suspended" in text for text in texts) == 1
    assert sum("the address was resumed" in text for text in texts) == 1
    assert all(job.recipients == ["c0001@contact.example.jp"] for job in notices)


def test_parallel_identical_suspensions_are_audited_and_notified_once(api: ApiHarness) -> None:
    api.create_contract(CN)
    api.create_address(CN)
    url = f"{BASE}/taro@e06.example.net"
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(
            lambda _n: api.client(api.operator_key).patch(url, json={"status": "suspended"}),
            range(10)))
    assert {(a.status_code, a.json()["status"]) for a in answers} == {(200, "suspended")}
    audit = api.operator.get(f"/v1/contracts/{CN}/audit").json()["entries"]
    assert [e["action"] for e in audit].count("address.suspend") == 1
    with api.session_factory() as session:
        notices = session.scalars(select(OutboundJob).where(OutboundJob.kind == "notice")).all()
    assert sum("the address was suspended" in _body(bytes(j.message or b"")) for j in notices) == 1
