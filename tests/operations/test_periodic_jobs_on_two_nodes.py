"""Periodic jobs run on every node that has the ``mx`` role (delivery/periodic.py): on one
database and one volume, two nodes running them at the same moment must not do the work
twice (SPEC §4: one quarantine digest per batch of new items)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.delivery.retention import purge
from mailplane.mailstore.paths import mailbox_dir
from mailplane.notices.digest import send_quarantine_digests
from mailplane.storage import addresses_repo, contracts_repo, quarantine_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import QuarantineItem
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.postgres

ADDRESSES = 40


def _seed(settings: Settings, now: datetime) -> list[str]:
    engine = make_engine(settings.database_url)
    addresses: list[str] = []
    try:
        with make_session_factory(engine)() as session:
            contract = contracts_repo.create_contract(
                session, customer_number="C0001", contact_email="c@contact.example.jp",
                included_addresses=ADDRESSES, now=now)
            for index in range(ADDRESSES):
                row = addresses_repo.create_address(
                    session, contract_id=contract.id, local_part=f"user{index:02d}",
                    subdomain="e06", base_domain="example.net", pop_account=f"m{index:07d}",
                    password_hash="x", virus_check=True, quota_bytes=1024**3, now=now)
                row.spam_notify = True
                addresses.append(row.address)
                quarantine_repo.add_items(session, items=[QuarantineItem(
                    id=uuid.uuid4().hex, address=row.address, received_at=now,
                    sender="spammer@spam.example", header_from="spammer@spam.example",
                    subject=f"offer {n}", reason="spam", size=100,
                    path=str(settings.quarantine_root / "missing"), notified=False)
                    for n in range(2)])
            session.commit()
    finally:
        engine.dispose()
    return addresses


def _run_on_two_nodes(settings: Settings, job_name: str) -> None:
    """Two "nodes" (own engine and pool each) start the same periodic job together."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    clock = FrozenClock()

    def node() -> None:
        engine = make_engine(settings.database_url)
        try:
            factory = make_session_factory(engine)
            barrier.wait(timeout=30)
            if job_name == "digest":
                send_quarantine_digests(settings, factory, clock)
            else:
                purge(settings, factory, clock)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=node) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []


def _files(maildir: Path) -> list[Path]:
    return [p for sub in ("new", "cur") if (maildir / sub).is_dir()
            for p in (maildir / sub).iterdir()]


def test_two_nodes_sending_digests_at_once_send_each_address_one_digest(
    make_settings: SettingsFactory, pg_url: str,
) -> None:
    settings = make_settings(database_url=pg_url)
    upgrade(settings.database_url)
    addresses = _seed(settings, datetime.now(UTC))
    _run_on_two_nodes(settings, "digest")
    counts = {a: len(_files(mailbox_dir(settings.maildir_root, a))) for a in addresses}
    assert {a: n for a, n in counts.items() if n != 1} == {}


def test_two_nodes_purging_at_once_both_finish_without_error(
    make_settings: SettingsFactory, pg_url: str,
) -> None:
    settings = make_settings(database_url=pg_url)
    upgrade(settings.database_url)
    _seed(settings, datetime(2020, 1, 1, tzinfo=UTC))  # everything long expired
    _run_on_two_nodes(settings, "purge")
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            assert session.query(QuarantineItem).count() == 0
    finally:
        engine.dispose()
