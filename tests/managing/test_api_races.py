"""Concurrent requests from one legitimate client (issue 15, "Races in the API"): the same
call 6-64 times at once over real sockets, on SQLite and PostgreSQL.  Each answer is a
success, a clear 4xx, or a 503/429 with ``Retry-After`` — never a 500 — and the state
afterwards is what one-at-a-time requests would have left."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx

from tests.factories.api import ApiHarness
from tests.factories.attack import assert_no_server_error, at_once, codes

ADDRESSES = "/v1/contracts/C0001/addresses"


def _create(body: dict[str, Any], client: httpx.Client,
            headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(ADDRESSES, json=body, headers=headers or {})


def test_parallel_creates_never_take_a_slot_without_the_charge(racing_api: ApiHarness) -> None:
    api = racing_api
    api.create_contract("C0001", included_addresses=1)
    calls = [partial(_create, {"local_part": f"user{i}", "subdomain": "e06",
                               "accept_terms": True}) for i in range(8)]
    responses = at_once(api, api.operator_key, calls)
    assert_no_server_error(responses)
    assert codes(responses) == [201] + [409] * 7
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {
        "charge_required"}
    quota = api.operator.get("/v1/contracts/C0001").json()["quota"]
    assert quota["used"] == 1 and quota["extra"] == 0


def test_parallel_paid_creates_count_every_paid_slot(racing_api: ApiHarness) -> None:
    """With ``accept_charge`` every address gets its own paid slot: none is lost to a
    stale read of ``extra_slots``."""
    api = racing_api
    api.create_contract("C0001", included_addresses=1)
    calls = [partial(_create, {"local_part": f"user{i}", "subdomain": "e06",
                               "accept_terms": True, "accept_charge": True})
             for i in range(6)]
    responses = at_once(api, api.operator_key, calls)
    assert_no_server_error(responses)
    assert codes(responses) == [201] * 6
    quota = api.operator.get("/v1/contracts/C0001").json()["quota"]
    assert quota["used"] == 6 and quota["extra"] == 5


def test_parallel_creates_with_one_idempotency_key_give_one_address(
        racing_api: ApiHarness) -> None:
    api = racing_api
    api.create_contract("C0001")
    body = {"local_part": "taro", "subdomain": "e06", "accept_terms": True}
    calls = [partial(_create, body, headers={"Idempotency-Key": "double-click"})] * 10
    responses = at_once(api, api.operator_key, calls)
    assert_no_server_error(responses)
    assert set(codes(responses)) <= {201, 409}
    created = [r for r in responses if r.status_code == 201]
    originals = [r for r in created if "Idempotent-Replayed" not in r.headers]
    assert len(originals) == 1
    # Every replay is the first response, initial password included (issue 14).
    assert all(r.json() == originals[0].json() for r in created)
    assert originals[0].json()["initial_password"]["password"]
    rows = api.operator.get(ADDRESSES).json()["addresses"]
    assert [r["address"] for r in rows] == ["taro@e06.example.net"]


def test_parallel_creates_of_one_address_give_one_201_and_409s(racing_api: ApiHarness) -> None:
    api = racing_api
    api.create_contract("C0001")
    body = {"local_part": "taro", "subdomain": "e06", "accept_terms": True}
    responses = at_once(api, api.operator_key, [partial(_create, body)] * 10)
    assert_no_server_error(responses)
    assert codes(responses) == [201] + [409] * 9
    assert {r.json()["error"]["code"] for r in responses[1:] if r.status_code == 409} <= {
        "address_taken"}


def test_parallel_password_changes_have_one_winner(racing_api: ApiHarness) -> None:
    api = racing_api
    api.create_contract("C0001")
    created = api.create_address("C0001")
    address = created["address"]["address"]
    current = created["initial_password"]["password"]
    url = f"{ADDRESSES}/{address}/password"
    news = [f"Changed-{i}x" for i in range(6)]
    calls = [partial(lambda new, c: c.post(url, json={"current": current, "new": new}), new)
             for new in news]
    responses = at_once(api, api.operator_key, calls)
    assert_no_server_error(responses)
    # One wins; each other caller is told its change did not happen: 409 (changed at the
    # same time) or 422 (its "current" password is no longer the current one).
    assert codes(responses).count(200) == 1
    assert set(codes(responses)) <= {200, 409, 422}
    winner = news[[r.status_code for r in responses].index(200)]
    assert [_works(api, url, new) for new in news] == [new == winner for new in news]


def _works(api: ApiHarness, url: str, password: str) -> bool:
    """Whether ``password`` is the current one, without changing it: the API checks the
    current password before it refuses a new one equal to it."""
    probe = api.operator.post(url, json={"current": password, "new": password})
    assert probe.status_code == 422, probe.text
    return bool(probe.json()["error"]["field"] == "new")


def test_parallel_reissues_hand_out_only_a_password_that_works(racing_api: ApiHarness) -> None:
    """Concurrent reissues behave as if made one after the other: each caller told "here
    is the new password" was, and only the last one's works now (each later one replaced
    it, audited and notified), or the caller is told nothing changed (409)."""
    api = racing_api
    api.create_contract("C0001")
    address = api.create_address("C0001")["address"]["address"]
    url = f"{ADDRESSES}/{address}/password"
    responses = at_once(api, api.operator_key,
                        [lambda c: c.post(url + "/reissue")] * 6)
    assert_no_server_error(responses)
    assert set(codes(responses)) <= {200, 409}
    issued = [r.json()["password"] for r in responses if r.status_code == 200]
    assert issued
    assert [_works(api, url, password) for password in issued].count(True) == 1
    audit = api.operator.get("/v1/contracts/C0001/audit").json()["entries"]
    assert [e["action"] for e in audit].count("address.password_reissue") == len(issued)


def test_64_parallel_reads_with_one_key_are_served_or_told_to_retry(
        any_api: ApiHarness) -> None:
    api = any_api
    api.create_contract("C0001")
    address = api.create_address("C0001")["address"]["address"]
    reads = ["/v1/contracts/C0001", ADDRESSES, f"{ADDRESSES}/{address}"]
    calls = [partial(lambda url, c: c.get(url), reads[i % 3]) for i in range(64)]
    for key in (api.operator_key, api.create_key("customer", contract="C0001")):
        responses = at_once(api, key, calls)
        assert_no_server_error(responses)
        assert set(codes(responses)) <= {200, 429, 503}
        assert 200 in codes(responses)
    # The API still answers normally afterwards (nothing stuck, no connection leaked).
    assert api.operator.get(ADDRESSES).status_code == 200


def test_absurd_paging_values_are_refused_with_422(any_api: ApiHarness) -> None:
    api = any_api
    api.create_contract("C0001")
    for query in ("offset=1e20", "offset=99999999999999999999", "limit=1e20",
                  "offset=-1"):
        response = api.operator.get(f"/v1/contracts/C0001/audit?{query}")
        assert response.status_code == 422, (query, response.text)


#: One valid body for every per-address write (SPEC §11), sent 10 times at once each.
SETTINGS_WRITES: list[tuple[str, dict[str, Any]]] = [
    ("virus-check", {"enabled": False}),
    ("spam", {"judge": True, "quarantine": True, "notify": False}),
    ("deny-list", {"addresses": ["spam@bad.example", "x@bad.example"],
                   "subjects": ["buy now"],
                   "conditions": {"no_from": True, "angle_from": False, "blank_from": False,
                                  "no_subject": False, "blank_subject": False}}),
    ("allow-list", {"addresses": ["friend@good.example"]}),
    ("forwarding", {"destinations": ["a@fwd.example", "b@fwd.example"], "keep_copy": True}),
    ("auto-reply", {"enabled": True, "special_senders": ["boss@corp.example"],
                    "special_message": "away", "default_message": "on holiday"}),
    ("overseas", {"enabled": True}),
    ("quota", {"quota_bytes": 2 * 1024**3}),
]


def test_parallel_identical_settings_writes_all_succeed(any_api: ApiHarness) -> None:
    """An identical whole-replacing PUT sent 10 times at once (a client retrying) leaves
    the one stored value, and every caller is told so."""
    api = any_api
    api.create_contract("C0001")
    address = api.create_address("C0001")["address"]["address"]
    for setting, body in SETTINGS_WRITES:
        url = f"{ADDRESSES}/{address}/{setting}"
        responses = at_once(api, api.operator_key,
                            [partial(lambda u, b, c: c.put(u, json=b), url, body)] * 10)
        assert_no_server_error(responses)
        assert codes(responses) == [200] * 10, (setting, [r.text for r in responses])
        stored = api.operator.get(url).json()
        assert all(r.json() == stored for r in responses), setting


def test_parallel_deletes_of_one_address_delete_it_once(any_api: ApiHarness) -> None:
    api = any_api
    api.create_contract("C0001")
    address = api.create_address("C0001")["address"]["address"]
    url = f"{ADDRESSES}/{address}"
    responses = at_once(api, api.operator_key, [lambda c: c.delete(url)] * 8)
    assert_no_server_error(responses)
    assert codes(responses) == [204] + [404] * 7
    assert api.operator.get(url).status_code == 404
    audit = api.operator.get("/v1/contracts/C0001/audit").json()["entries"]
    assert [e["action"] for e in audit].count("address.delete") == 1
