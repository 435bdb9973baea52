"""The mailbox's folders and the quarantine as one of them (SPEC §4, §8, §9b), module by
module: modified UTF-7 names as Dovecot writes them, files found again after a reader
renamed them, the quota over the whole mailbox, and the quarantine index following its
folder — on SQLite and PostgreSQL, with two reconcilers at once."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.delivery.quarantine import (
    list_quarantine,
    quarantine_dir,
    reconcile,
    release_quarantine,
    write_item_file,
    write_item_tmp,
)
from mailplane.delivery.retention import purge
from mailplane.mailstore.folders import (
    QUARANTINE,
    SENT,
    TRASH,
    base_name,
    decode_mutf7,
    encode_mutf7,
    find_message,
    folder_dir,
)
from mailplane.mailstore.maildir import folder_size, mailbox_size, publish
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage import quarantine_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import QuarantineItem
from tests.factories.addresses import add_address

ADDRESS = "taro_1@e06.example.net"
NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
SPAM = b"From: spam@spam.example\r\nSubject: =?utf-8?b?44K744O844Or?=\r\n\r\nbuy\r\n"


@pytest.mark.parametrize(("name", "wire"), [
    ("迷惑メール", "&j,dg0TDhMPww6w-"),  # as Dovecot LISTs it
    ("送信済み", "&kAFP4W4IMH8-"),
    ("ごみ箱", "&MFQwf3ux-"),
    ("INBOX", "INBOX"),
    ("A&B 日本", "A&-B &ZeVnLA-"),
])
def test_modified_utf7_names_are_dovecots(name: str, wire: str) -> None:
    assert encode_mutf7(name) == wire
    assert decode_mutf7(wire) == name


def test_a_message_is_found_again_after_a_reader_renamed_it(tmp_path: Path) -> None:
    folder = tmp_path / ".x"
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True)
    (folder / "new" / "123.M1P2.host,S=10").write_bytes(b"x")
    assert find_message(folder, "123.M1P2.host,S=10") == folder / "new" / "123.M1P2.host,S=10"
    os.rename(folder / "new" / "123.M1P2.host,S=10", folder / "cur" / "123.M1P2.host,S=10:2,S")
    assert base_name("123.M1P2.host,S=10:2,S") == "123.M1P2.host,S=10"
    assert find_message(folder, "123.M1P2.host,S=10") == (
        folder / "cur" / "123.M1P2.host,S=10:2,S")
    assert find_message(folder, "other") is None


def test_the_quota_counts_every_folder_the_quarantine_too(tmp_path: Path) -> None:
    """SPEC §8 and issue 20: quarantined mail counts against the quota, as Dovecot's quota
    counts a Junk folder — and as Dovecot counts 送信済み and ごみ箱."""
    maildir = tmp_path / "taro"
    for name, size in ((None, 100), (SENT, 20), (TRASH, 3), (QUARANTINE, 5000)):
        root = maildir if name is None else folder_dir(maildir, name)
        (root / "cur").mkdir(parents=True)
        (root / "cur" / f"1.M1P1.h,S={size}:2,S").write_bytes(b"x")
    (maildir / ".pop3.lock").write_bytes(b"")
    assert mailbox_size(maildir) == 5123
    assert folder_size(folder_dir(maildir, QUARANTINE)) == 5000


@pytest.fixture
def quarantine_env(db_settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(db_settings.database_url)
    factory = make_session_factory(engine)
    add_address(factory, ADDRESS)
    yield db_settings, factory
    engine.dispose()


def _quarantine(settings: Settings, factory, data: bytes = SPAM,  # type: ignore[no-untyped-def]
                item_id: str = "1763866800-0000000000000001") -> QuarantineItem:
    """What the MX does (delivery/store.py): tmp, row, then the rename into new/."""
    pending = write_item_tmp(quarantine_dir(settings, ADDRESS), data, now=NOW)
    item = QuarantineItem(id=item_id, address=ADDRESS, received_at=NOW, sender="s@spam.example",
                          header_from="spam@spam.example", subject="セール", reason="spam",
                          size=len(data), path=str(pending.final_path), notified=False)
    with factory() as session:
        quarantine_repo.add_items(session, items=[item])
        session.commit()
    publish([pending])
    return item


def test_the_index_follows_the_folder_both_ways(quarantine_env) -> None:  # type: ignore[no-untyped-def]
    settings, factory = quarantine_env
    clock = FrozenClock(NOW)
    folder = quarantine_dir(settings, ADDRESS)
    item = _quarantine(settings, factory)
    assert folder == folder_dir(mailbox_dir(settings.maildir_root, ADDRESS), QUARANTINE)
    # A reader marks it seen (renamed into cur/): still the same item.
    [path] = list((folder / "new").iterdir())
    os.rename(path, folder / "cur" / f"{path.name}:2,S")
    assert [e.id for e in list_quarantine(settings, factory, address=ADDRESS, clock=clock)] == [
        item.id]
    # An IMAP client moves it out (MOVE = copy to INBOX + expunge here): gone.
    os.unlink(folder / "cur" / f"{path.name}:2,S")
    assert list_quarantine(settings, factory, address=ADDRESS, clock=clock) == []
    # An IMAP client puts a message in: it is quarantined, reason "moved", no digest.
    (folder / "cur" / "1763866900.M5P6.client,S=70:2,").write_bytes(SPAM)
    [moved] = list_quarantine(settings, factory, address=ADDRESS, clock=clock)
    assert (moved.reason, moved.subject, moved.notified) == ("moved", "セール", True)
    assert release_quarantine(settings, factory, address=ADDRESS, item_id=moved.id,
                              clock=clock)
    inbox = mailbox_dir(settings.maildir_root, ADDRESS) / "new"
    assert [p.read_bytes() for p in inbox.iterdir()] == [SPAM]
    assert list(folder.glob("*/*")) == []
    assert list_quarantine(settings, factory, address=ADDRESS, clock=clock) == []


def test_a_message_still_being_written_keeps_its_row(quarantine_env) -> None:  # type: ignore[no-untyped-def]
    """The MX commits the row before the rename: while the file is in tmp/, the row is
    not taken for one whose message left."""
    settings, factory = quarantine_env
    pending = write_item_tmp(quarantine_dir(settings, ADDRESS), SPAM, now=NOW)
    with factory() as session:
        quarantine_repo.add_items(session, items=[QuarantineItem(
            id="in-flight", address=ADDRESS, received_at=NOW, sender="", header_from="",
            subject="", reason="spam", size=len(SPAM), path=str(pending.final_path),
            notified=False)])
        session.commit()
    reconcile(settings, factory, address=ADDRESS, clock=FrozenClock(NOW))
    with factory() as session:
        assert [i.id for i in quarantine_repo.list_for_address(session, address=ADDRESS)] == [
            "in-flight"]


def test_two_reconcilers_at_once_index_a_moved_message_once(quarantine_env) -> None:  # type: ignore[no-untyped-def]
    settings, factory = quarantine_env
    folder = quarantine_dir(settings, ADDRESS)
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for n in range(5):
        (folder / "cur" / f"17638669{n:02d}.M5P6.client,S=70:2,").write_bytes(SPAM)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(10)
            reconcile(settings, factory, address=ADDRESS, clock=FrozenClock(NOW))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    with factory() as session:
        assert len(quarantine_repo.list_for_address(session, address=ADDRESS)) == 5


def test_items_of_the_old_store_move_into_the_folder(quarantine_env) -> None:  # type: ignore[no-untyped-def]
    """Quarantined before 迷惑メール was a folder: moved in, so IMAP sees it too."""
    settings, factory = quarantine_env
    old = write_item_file(mailbox_dir(settings.quarantine_root, ADDRESS), "old-1", SPAM)
    with factory() as session:
        quarantine_repo.add_items(session, items=[QuarantineItem(
            id="old-1", address=ADDRESS, received_at=NOW, sender="", header_from="",
            subject="old", reason="deny", size=len(SPAM), path=str(old), notified=True)])
        session.commit()
    [entry] = list_quarantine(settings, factory, address=ADDRESS, clock=FrozenClock(NOW))
    assert (entry.id, entry.reason) == ("old-1", "deny")
    assert not old.exists()
    [moved] = list((quarantine_dir(settings, ADDRESS) / "new").iterdir())
    assert moved.read_bytes() == SPAM


def test_the_seven_days_still_apply_to_a_renamed_message(quarantine_env) -> None:  # type: ignore[no-untyped-def]
    settings, factory = quarantine_env
    _quarantine(settings, factory)
    folder = quarantine_dir(settings, ADDRESS)
    [path] = list((folder / "new").iterdir())
    os.rename(path, folder / "cur" / f"{path.name}:2,S")
    result = purge(settings, factory, FrozenClock(NOW + timedelta(days=7, minutes=1)))
    assert result.quarantine_deleted == 1
    assert list(folder.glob("*/*")) == []
