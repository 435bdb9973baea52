"""Which changes end open mail sessions, read back from the audit log every node writes
(mailplane/delivery/session_ends.py) — on SQLite and PostgreSQL, and on PostgreSQL with
a change whose id was handed out before a higher one committed.  The sessions themselves
end over real sockets in tests/reading/test_imap.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailplane.config.settings import Settings
from mailplane.delivery.session_ends import LOOKBACK_SECONDS, SessionEnds
from mailplane.storage import audit_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import Address
from tests.factories.addresses import add_address

NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Ticks:
    """The watcher's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _factory(url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def session_factory(db_settings: Settings) -> Iterator[sessionmaker[Session]]:
    yield from _factory(db_settings.database_url)


@pytest.fixture
def pg_factory(pg_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(pg_url)
    yield from _factory(pg_url)


def _log(session: Session, action: str, *, address: str | None = None,
         contract_id: int | None = 1) -> None:
    audit_repo.record(session, actor="test", action=action, now=NOW,
                      contract_id=contract_id, address=address)


def _write(factory: sessionmaker[Session], action: str, **where: object) -> None:
    with factory() as session, session.begin():
        _log(session, action, **where)  # type: ignore[arg-type]


def _contract_of(factory: sessionmaker[Session], address: str) -> int:
    with factory() as session:
        return int(session.scalars(select(Address.contract_id)
                                   .where(Address.address == address)).one())


async def test_only_changes_that_invalidate_a_login_end_sessions_once_and_again(
        session_factory: sessionmaker[Session]) -> None:
    """Reissue, suspension, deletion end the address's sessions; a contract's suspension
    or termination ends each of its addresses'; a settings change ends nothing.  Each is
    handed over at once and once more later (a login checked just before the change), and
    never a third time; what was logged before the watcher started is not its business."""
    add_address(session_factory, "taro@e06.example.net")
    contract = _contract_of(session_factory, "taro@e06.example.net")
    add_address(session_factory, "hanako@e06.example.net", contract_id=contract)
    _write(session_factory, "address.password_reissue", address="old@e06.example.net")

    ticks = Ticks()
    ended: list[frozenset[str]] = []

    async def ender(addresses: frozenset[str]) -> None:
        ended.append(addresses)

    ends = SessionEnds(session_factory, poll_seconds=1, again_after_seconds=10,
                       monotonic=ticks)
    ends.subscribe("test", ender)
    assert await ends.check() == frozenset()  # the floor: from now on

    _write(session_factory, "address.update", address="taro@e06.example.net")
    _write(session_factory, "address.password_reissue", address="Taro@e06.example.net")
    ticks.now += 1
    assert await ends.check() == {"taro@e06.example.net"}
    ticks.now += 1
    assert await ends.check() == frozenset()  # acted on once

    _write(session_factory, "contract.suspend", contract_id=contract)
    ticks.now += 1
    assert await ends.check() == {"taro@e06.example.net", "hanako@e06.example.net"}
    ticks.now += 8  # ten seconds after the reissue: its second pass
    assert await ends.check() == {"taro@e06.example.net"}
    ticks.now += 2
    assert await ends.check() == {"taro@e06.example.net", "hanako@e06.example.net"}
    for _ in range(3):
        ticks.now += LOOKBACK_SECONDS
        assert await ends.check() == frozenset()
    assert ended == [{"taro@e06.example.net"},
                     {"taro@e06.example.net", "hanako@e06.example.net"},
                     {"taro@e06.example.net"},
                     {"taro@e06.example.net", "hanako@e06.example.net"}]


async def test_a_change_that_commits_after_a_later_one_is_still_seen(
        pg_factory: sessionmaker[Session]) -> None:
    """PostgreSQL hands out ids before commit: a reissue whose transaction is slow
    commits after a deletion that got a higher id — and the watcher, which has already
    read past it, still ends its sessions."""
    factory = pg_factory
    ticks = Ticks()
    ends = SessionEnds(factory, poll_seconds=1, again_after_seconds=3600, monotonic=ticks)
    await ends.check()
    slow = factory()
    slow.begin()
    _log(slow, "address.password_reissue", address="slow@e06.example.net")
    slow.flush()  # the id is taken, the row not yet visible
    _write(factory, "address.delete", address="quick@e06.example.net")
    ticks.now += 1
    assert await ends.check() == {"quick@e06.example.net"}
    slow.commit()
    slow.close()
    ticks.now += LOOKBACK_SECONDS / 2
    assert await ends.check() == {"slow@e06.example.net"}
    ticks.now += LOOKBACK_SECONDS * 2
    assert await ends.check() == frozenset()
