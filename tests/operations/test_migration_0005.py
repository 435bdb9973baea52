"""Migration 0005 on a database with data (issue 15): the SQLite ``addresses`` rebuild keeps
every address, its settings and its keys (foreign keys are off during the rebuild, so the
drop cascades nowhere), ids are never reused afterwards, and a key issued before the
migration still verifies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from mailplane.auth.api_keys import KeyVerifier, new_key_material
from mailplane.auth.passwords import PasswordHashing
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from tests.conftest import SettingsFactory

_ADDRESS = (
    "INSERT INTO addresses (contract_id, local_part, subdomain, base_domain, address,"
    " pop_account, password_hash, password_changed_at, status, virus_check, spam_judge,"
    " spam_quarantine, spam_notify, deny_no_from, deny_angle_from, deny_blank_from,"
    " deny_no_subject, deny_blank_subject, forward_keep_copy, quota_bytes, created_at)"
    " VALUES (:contract, :local, 'e06', 'example.net', :address, :pop, 'h', :now, 'active',"
    " true, false, false, false, false, false, false, false, false, true, 1024, :now)"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, make_settings: SettingsFactory) -> str:
    if request.param == "sqlite":
        return make_settings().database_url
    return str(request.getfixturevalue("pg_url"))


def test_0005_keeps_data_and_old_keys_and_never_reuses_ids(
        database_url: str, make_settings: SettingsFactory) -> None:
    settings = make_settings(database_url=database_url)
    hashing = PasswordHashing(settings.security)
    upgrade(database_url, "0003")
    now = datetime.now(UTC)
    key_id, secret, key = new_key_material()
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO contracts (customer_number, contact_email, status,"
                              " included_addresses, extra_slots, created_at)"
                              " VALUES ('C1', 'c@example.jp', 'active', 5, 0, :now)"),
                         {"now": now})
            for i in range(3):
                conn.execute(text(_ADDRESS), {"contract": 1, "local": f"user{i}",
                                              "address": f"user{i}@e06.example.net",
                                              "pop": f"m000000{i}", "now": now})
            newest = conn.execute(text("SELECT max(id) FROM addresses")).scalar_one()
            conn.execute(text("INSERT INTO forward_destinations (address_id, destination,"
                              " position) VALUES (:a, 'x@fwd.example', 0)"), {"a": newest})
            conn.execute(text("INSERT INTO api_keys (key_id, secret_hash, role, contract_id,"
                              " address_id, label, created_at) VALUES (:k, :h, 'customer', 1,"
                              " :a, '', :now)"),
                         {"k": key_id, "h": hashing.hash(secret), "a": newest, "now": now})
            conn.execute(text("INSERT INTO idempotency_keys (scope, key, request_hash,"
                              " status_code, response_body, created_at) VALUES"
                              " ('1:create-address', 'k', 'h', 201, :b, :now)"),
                         {"b": b'{"initial_password": null}', "now": now})
        engine.dispose()
        upgrade(database_url)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM addresses")).scalar_one() == 3
            assert conn.execute(text("SELECT count(*) FROM forward_destinations")
                                ).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one() == 0
        with make_session_factory(engine)() as session:
            principal = KeyVerifier(hashing).verify(session, key)
        assert principal is not None and principal.address_id == newest
        with engine.begin() as conn:  # make_engine turns SQLite's foreign keys on
            conn.execute(text("DELETE FROM addresses WHERE id = :a"), {"a": newest})
            # Deleting the address deleted its key and its forwarding (ON DELETE CASCADE).
            assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM forward_destinations")
                                ).scalar_one() == 0
            conn.execute(text(_ADDRESS), {"contract": 1, "local": "later",
                                          "address": "later@e06.example.net",
                                          "pop": "m0000009", "now": now})
            reused = conn.execute(text("SELECT id FROM addresses WHERE local_part = 'later'")
                                  ).scalar_one()
        assert reused > newest
    finally:
        engine.dispose()
