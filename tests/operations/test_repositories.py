"""Storage on SQLite and on the PostgreSQL server (each test runs on both)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from mailplane.clock import FrozenClock, as_utc
from mailplane.config.settings import Settings
from mailplane.storage import addresses_repo, audit_repo, contracts_repo, policy_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import Address, AutoReply
from mailplane.storage.policy_loader import load_snapshot, read_revision


@pytest.fixture
def factory(db_settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(db_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _address(session, contract_id: int, local: str, clock: FrozenClock,
             pop: str = "m0000001") -> Address:  # type: ignore[no-untyped-def]
    return addresses_repo.create_address(
        session, contract_id=contract_id, local_part=local, subdomain="e06",
        base_domain="example.net", pop_account=pop, password_hash="$argon2id$x",
        virus_check=True, quota_bytes=1024**3, now=clock.now(),
    )


def test_migrations_create_every_table_and_are_idempotent(db_settings: Settings) -> None:
    upgrade(db_settings.database_url)  # second run: nothing to do, no error
    engine = make_engine(db_settings.database_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"contracts", "addresses", "list_entries", "forward_destinations", "auto_replies",
            "auto_reply_ledger", "api_keys", "audit_log", "policy_revision",
            "idempotency_keys", "quarantine_items", "outbound_jobs",
            "login_failures", "policy_changes"} <= tables


def test_address_round_trip_and_snapshot(factory) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    with factory() as session:
        contract = contracts_repo.create_contract(
            session, customer_number="C1", contact_email="c@example.jp",
            included_addresses=5, now=clock.now())
        row = _address(session, contract.id, "taro", clock)
        policy_repo.bump_revision(session)
        session.commit()
        assert row.address == "taro@e06.example.net"
        assert isinstance(row.auto_reply, AutoReply)
    with factory() as session:
        stored = session.scalar(select(Address))
        assert stored is not None
        assert as_utc(stored.created_at) == clock.now()
        snapshot = load_snapshot(session, ("example.net",))
    assert snapshot.revision == 1
    policy = snapshot.lookup("TARO@e06.example.net")
    assert policy is not None and policy.virus_check and policy.accepts_logins
    assert snapshot.by_pop_account["m0000001"] is policy
    assert snapshot.is_hosted_domain("e06.example.net")
    assert snapshot.is_hosted_domain("x01.example.net")
    assert not snapshot.is_hosted_domain("example.com")


def test_full_address_and_pop_account_are_unique(factory) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    with factory() as session:
        contract = contracts_repo.create_contract(
            session, customer_number="C1", contact_email="c@example.jp",
            included_addresses=5, now=clock.now())
        _address(session, contract.id, "taro", clock)
        session.commit()
        with pytest.raises(IntegrityError):
            _address(session, contract.id, "taro", clock, pop="m0000002")
        session.rollback()
        with pytest.raises(IntegrityError):
            _address(session, contract.id, "jiro", clock, pop="m0000001")


def test_deleted_address_is_unavailable_during_the_cooloff_only(
    factory,  # type: ignore[no-untyped-def]
) -> None:
    clock = FrozenClock()
    with factory() as session:
        contract = contracts_repo.create_contract(
            session, customer_number="C1", contact_email="c@example.jp",
            included_addresses=5, now=clock.now())
        row = _address(session, contract.id, "taro", clock)
        session.commit()
        addresses_repo.delete_address(session, address=row, now=clock.now())
        session.commit()
        full = ["taro@e06.example.net"]
        cooloff = timedelta(days=30)
        assert addresses_repo.unavailable_among(session, addresses=full, now=clock.now(),
                                                cooloff=cooloff) == set(full)
        clock.advance(timedelta(days=31))
        assert addresses_repo.unavailable_among(session, addresses=full, now=clock.now(),
                                                cooloff=cooloff) == set()


def test_policy_revision_counts_every_bump(factory) -> None:  # type: ignore[no-untyped-def]
    with factory() as session:
        start = read_revision(session)
        for _ in range(3):
            policy_repo.bump_revision(session)
        session.commit()
        assert read_revision(session) == start + 3


def test_audit_is_listed_newest_first(factory) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    with factory() as session:
        for action in ("a", "b", "c"):
            audit_repo.record(session, actor="operator:x", action=action, now=clock.now(),
                              contract_id=7, detail={"n": action})
            clock.advance(timedelta(seconds=1))
        session.commit()
        rows = audit_repo.list_for_contract(session, contract_id=7, limit=10, offset=0)
    assert [r.action for r in rows] == ["c", "b", "a"]
    assert rows[0].detail == {"n": "c"}
