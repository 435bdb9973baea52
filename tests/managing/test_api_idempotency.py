"""``Idempotency-Key`` replays (issue 14): the first response, initial password included,
for the key's lifetime; sealed at rest; purged after; never a 500 (the parallel case is in
test_api_races.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from mailplane.delivery.retention import purge
from mailplane.storage.models import IdempotencyRecord
from tests.factories.api import ApiFactory, ApiHarness

ADDRESSES = "/v1/contracts/C0001/addresses"
BODY: dict[str, Any] = {"local_part": "taro", "subdomain": "e06", "accept_terms": True}


def _create(api: ApiHarness, key: str, body: dict[str, Any] = BODY) -> Any:
    return api.operator.post(ADDRESSES, json=body, headers={"Idempotency-Key": key})


def test_a_replay_is_the_first_response_and_is_sealed_at_rest(any_api: ApiHarness) -> None:
    api = any_api
    api.create_contract("C0001")
    first = _create(api, "click-1")
    password = first.json()["initial_password"]["password"]
    api.clock.advance(timedelta(hours=api.settings.api.idempotency_hours - 1))
    again = _create(api, "click-1")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    with api.session_factory() as session:
        stored = session.scalars(select(IdempotencyRecord.response_body)).all()
    assert len(stored) == 1
    for needle in (password, "taro@e06.example.net", first.json()["pop_account"]):
        assert needle.encode() not in stored[0]


def test_a_replay_record_expires_and_is_purged(any_api: ApiHarness) -> None:
    api = any_api
    api.create_contract("C0001")
    assert _create(api, "click-1").status_code == 201
    api.clock.advance(timedelta(hours=api.settings.api.idempotency_hours, minutes=1))
    # Expired: the key no longer replays.  The same request is now a new registration of
    # an address that exists (409); another request may reuse the key.
    taken = _create(api, "click-1")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "address_taken"
    other = _create(api, "click-1", {**BODY, "subdomain": "e07"})
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert _create(api, "click-2", {**BODY, "subdomain": "e08"}).status_code == 201
    api.clock.advance(timedelta(hours=api.settings.api.idempotency_hours, minutes=1))
    result = purge(api.settings, api.session_factory, api.clock)
    assert result.idempotency_records_deleted == 2
    with api.session_factory() as session:
        assert session.scalars(select(IdempotencyRecord)).all() == []


def test_a_node_without_the_shared_secret_answers_409_not_500(
        any_api: ApiHarness, api_factory: ApiFactory) -> None:
    """Several nodes must share ``api.replay_secret``; one that does not cannot open
    another's replay and says so."""
    api = any_api
    other_node = api_factory(database_url=api.settings.database_url,
                             api={"replay_secret": "not-the-same-secret"})
    api.create_contract("C0001")
    assert _create(api, "click-1").status_code == 201
    replay = other_node.operator.post(ADDRESSES, json=BODY,
                                      headers={"Idempotency-Key": "click-1"})
    assert replay.status_code == 409, replay.text
    assert replay.json()["error"]["code"] == "idempotency_unreadable"


def test_nodes_sharing_the_secret_replay_each_others_responses(
        any_api: ApiHarness, api_factory: ApiFactory) -> None:
    api = api_factory(database_url=any_api.settings.database_url,
                      api={"replay_secret": "shared-by-every-node"})
    other_node = api_factory(database_url=any_api.settings.database_url,
                             api={"replay_secret": "shared-by-every-node"})
    api.create_contract("C0001")
    first = _create(api, "click-1")
    replay = other_node.operator.post(ADDRESSES, json=BODY,
                                      headers={"Idempotency-Key": "click-1"})
    assert replay.status_code == 201 and replay.json() == first.json()


def test_the_generated_replay_secret_is_private(api: ApiHarness) -> None:
    path = api.settings.state_dir / "api-replay.secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_text().strip()) >= 40
