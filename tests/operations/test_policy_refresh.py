"""The policy cache is patched from the change log, not rebuilt (docs/performance.md,
control plane): exactly the logged addresses (or a contract's addresses) are reloaded,
everything else stays the same object, and anything the log cannot vouch for — a revision
without a log row, a vanished address — falls back to a full reload.  On SQLite and on
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.delivery.retention import purge_policy_changes
from mailplane.policy.model import PolicySnapshot
from mailplane.storage import addresses_repo, contracts_repo, policy_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import Address, Contract, PolicyChange
from mailplane.storage.policy_loader import load_snapshot, refresh_snapshot

BASE = ("example.net",)


@pytest.fixture
def factory(db_settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(db_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _seed(factory: sessionmaker[Session], clock: FrozenClock) -> tuple[int, int]:
    """Two contracts: C1 with taro and hanako on e06, C2 with jiro on k11."""
    with factory() as session:
        ids = []
        for number, subdomain, locals_ in (("C1", "e06", ("taro", "hanako")),
                                           ("C2", "k11", ("jiro",))):
            contract = contracts_repo.create_contract(
                session, customer_number=number, contact_email="c@example.jp",
                included_addresses=5, now=clock.now())
            for n, local in enumerate(locals_):
                addresses_repo.create_address(
                    session, contract_id=contract.id, local_part=local, subdomain=subdomain,
                    base_domain="example.net", pop_account=f"m{number}{n}",
                    password_hash="$argon2id$x", virus_check=True, quota_bytes=1024**3,
                    now=clock.now())
            ids.append(contract.id)
        policy_repo.bump_revision(session)  # a bulk load: not logged
        session.commit()
    return ids[0], ids[1]


def _snapshot(factory: sessionmaker[Session]) -> PolicySnapshot:
    with factory() as session:
        return load_snapshot(session, BASE)


def _refresh(factory: sessionmaker[Session], current: PolicySnapshot) -> PolicySnapshot:
    with factory() as session:
        return refresh_snapshot(session, current)


def _change_setting(factory: sessionmaker[Session], clock: FrozenClock, address: str,
                    **values: object) -> None:
    """What a settings PUT does to the policy: update the row, log the bump."""
    with factory() as session:
        session.execute(update(Address).where(Address.address == address).values(**values))
        policy_repo.bump_revision(session, address=address, now=clock.now())
        session.commit()


def test_a_logged_settings_change_reloads_only_that_address(factory) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    _seed(factory, clock)
    before = _snapshot(factory)
    _change_setting(factory, clock, "taro@e06.example.net", spam_judge=True)
    after = _refresh(factory, before)
    assert after.revision == before.revision + 1
    taro = after.lookup("taro@e06.example.net")
    assert taro is not None and taro.spam_judge
    assert after.by_pop_account[taro.pop_account] is taro
    # untouched addresses are the very same objects: nothing else was reloaded
    for other in ("hanako@e06.example.net", "jiro@k11.example.net"):
        assert after.lookup(other) is before.lookup(other)
    assert before.lookup("taro@e06.example.net").spam_judge is False  # old snapshot intact


def test_a_contract_level_change_reloads_every_address_of_that_contract(factory) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    c1, _c2 = _seed(factory, clock)
    before = _snapshot(factory)
    with factory() as session:
        session.execute(update(Contract).where(Contract.id == c1).values(status="suspended"))
        policy_repo.bump_revision(session, contract_id=c1, now=clock.now())
        session.commit()
    after = _refresh(factory, before)
    assert after.lookup("taro@e06.example.net").status == "suspended"
    assert after.lookup("hanako@e06.example.net").status == "suspended"
    assert after.lookup("jiro@k11.example.net") is before.lookup("jiro@k11.example.net")


def test_a_new_address_is_added_with_its_domain(factory) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    _c1, c2 = _seed(factory, clock)
    before = _snapshot(factory)
    with factory() as session:
        addresses_repo.create_address(
            session, contract_id=c2, local_part="saburo", subdomain="z99",
            base_domain="example.net", pop_account="mnew", password_hash="$argon2id$x",
            virus_check=True, quota_bytes=1024**3, now=clock.now())
        policy_repo.bump_revision(session, address="saburo@z99.example.net", now=clock.now())
        session.commit()
    after = _refresh(factory, before)
    assert after.lookup("saburo@z99.example.net") is not None
    assert "z99.example.net" in after.hosted_domains
    assert after.by_pop_account["mnew"].address == "saburo@z99.example.net"


def test_a_deleted_address_makes_a_full_reload_so_its_domain_goes_too(factory) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    _seed(factory, clock)
    before = _snapshot(factory)
    with factory() as session:
        session.execute(delete(Address).where(Address.address == "jiro@k11.example.net"))
        policy_repo.bump_revision(session, address="jiro@k11.example.net", now=clock.now())
        session.commit()
    after = _refresh(factory, before)
    assert after.lookup("jiro@k11.example.net") is None
    assert "mC20" not in after.by_pop_account
    assert "k11.example.net" not in after.hosted_domains
    assert after.lookup("taro@e06.example.net") is not before.lookup("taro@e06.example.net")


def test_a_revision_the_log_cannot_vouch_for_makes_a_full_reload(factory) -> None:  # type: ignore[no-untyped-def]
    clock = FrozenClock()
    _seed(factory, clock)
    before = _snapshot(factory)
    with factory() as session:
        session.execute(update(Address).values(virus_check=False))
        policy_repo.bump_revision(session, address="taro@e06.example.net", now=clock.now())
        policy_repo.bump_revision(session)  # e.g. a bulk change that names nothing
        session.commit()
    after = _refresh(factory, before)
    assert after.revision == before.revision + 2
    assert all(not p.virus_check for p in after.by_address.values())


def test_the_log_keeps_a_day_and_a_cache_older_than_that_reloads_everything(
    factory,  # type: ignore[no-untyped-def]
) -> None:
    clock = FrozenClock()
    _seed(factory, clock)
    before = _snapshot(factory)
    _change_setting(factory, clock, "hanako@e06.example.net", spam_notify=True)
    clock.advance(timedelta(days=1, seconds=1))
    assert purge_policy_changes(factory, clock) == 1
    with factory() as session:
        assert session.query(PolicyChange).count() == 0
    after = _refresh(factory, before)
    assert after.lookup("hanako@e06.example.net").spam_notify is True
    assert after.lookup("taro@e06.example.net") is not before.lookup("taro@e06.example.net")
