"""Per-address quarantine store (SPEC §4): the bytes on disk, the index in the database.

Store layout: ``{quarantine_root}/{domain}/{local_part}/<item id>.eml``, each file fsynced
with its directory before the index row commits.  The functions under "API" are what the
management API calls (blocking: run them in a thread); release delivers to the inbox
*without* filtering again, because the customer has decided.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock, as_utc
from mailplane.config.settings import Settings
from mailplane.mail.preview import MessageView, display_header, message_view
from mailplane.mailstore.maildir import deliver, write_new_file
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage import quarantine_repo
from mailplane.storage.models import QuarantineItem


def quarantine_dir(settings: Settings, address: str) -> Path:
    return mailbox_dir(settings.quarantine_root, address)


def new_item_id(now: datetime) -> str:
    return f"{int(now.timestamp())}-{secrets.token_hex(8)}"


def write_item_file(directory: Path, item_id: str, data: bytes, *, fsync: bool = True) -> Path:
    """Write and fsync one quarantined message (blocking); the caller fsyncs the dir
    (and, with ``fsync=False``, the file: one ``syncfs`` for a batch)."""
    path = directory / f"{item_id}.eml"
    write_new_file(path, data, fsync=fsync,
                   make_parent=lambda: directory.mkdir(parents=True, exist_ok=True))
    return path


# --- API -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: str
    address: str
    received_at: datetime
    sender: str
    header_from: str
    subject: str
    reason: str
    size: int
    notified: bool


@dataclass(frozen=True, slots=True)
class QuarantineDetail:
    entry: QuarantineEntry
    raw: bytes
    #: Headers, text and sanitised HTML as the customer sees them (mail/preview.py).
    view: MessageView

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self.view.headers

    @property
    def body_preview(self) -> str:
        return self.view.text


def _entry(item: QuarantineItem) -> QuarantineEntry:
    return QuarantineEntry(
        id=item.id,
        address=item.address,
        received_at=as_utc(item.received_at),
        sender=display_header(item.sender),
        header_from=display_header(item.header_from),
        subject=display_header(item.subject),
        reason=item.reason,
        size=item.size,
        notified=item.notified,
    )


def list_quarantine(
    session_factory: sessionmaker[Session], *, address: str
) -> list[QuarantineEntry]:
    """Quarantined messages of one address, newest first."""
    with session_factory() as session:
        return [_entry(i) for i in quarantine_repo.list_for_address(session, address=address)]


def show_quarantine(
    session_factory: sessionmaker[Session], *, address: str, item_id: str
) -> QuarantineDetail | None:
    """Metadata, raw bytes and the view (headers, text, sanitised HTML); None if not
    found.  Blocking (parsing, nh3): the API runs it in a thread."""
    with session_factory() as session:
        item = quarantine_repo.get_item(session, address=address, item_id=item_id)
    if item is None:
        return None
    try:
        raw = Path(item.path).read_bytes()
    except FileNotFoundError:
        return None
    return QuarantineDetail(_entry(item), raw, message_view(raw))


def release_quarantine(
    settings: Settings,
    session_factory: sessionmaker[Session],
    *,
    address: str,
    item_id: str,
    clock: Clock,
) -> bool:
    """Deliver a quarantined message to the inbox unfiltered, then remove the item.

    Order keeps "nothing is lost": the inbox copy is durable before the index row goes; a
    crash in between leaves a duplicate in quarantine, never a lost message.
    """
    with session_factory() as session:
        item = quarantine_repo.get_item(session, address=address, item_id=item_id)
        if item is None:
            return False
        path = Path(item.path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # deleted meanwhile (another tab, a bulk delete)
            return False
        deliver(settings.maildir_root, address, data, now=clock.now())
        quarantine_repo.delete_items(session, item_ids=[item.id])
        session.commit()
    path.unlink(missing_ok=True)
    return True


def delete_quarantine(
    session_factory: sessionmaker[Session], *, address: str, item_id: str
) -> bool:
    """Delete one quarantined message (index row first, then the file)."""
    with session_factory() as session:
        item = quarantine_repo.get_item(session, address=address, item_id=item_id)
        if item is None:
            return False
        path = Path(item.path)
        quarantine_repo.delete_items(session, item_ids=[item.id])
        session.commit()
    path.unlink(missing_ok=True)
    return True


def delete_quarantine_many(
    session_factory: sessionmaker[Session], *, address: str, item_ids: list[str]
) -> int:
    """Delete several quarantined messages of one address in one transaction (index rows
    first, then the files); returns how many this call deleted.  Ids of other addresses, and ids
    already gone, are left alone: a repeated request deletes nothing more."""
    with session_factory() as session:
        items = quarantine_repo.items_of(session, address=address, item_ids=item_ids)
        paths = [Path(item.path) for item in items]
        deleted = quarantine_repo.delete_items(session, item_ids=[item.id for item in items])
        session.commit()
    for path in paths:
        path.unlink(missing_ok=True)
    return deleted
