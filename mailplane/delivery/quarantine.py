"""Per-address quarantine store (SPEC §4): the bytes on disk, the index in the database.

Store layout: ``{quarantine_root}/{domain}/{local_part}/<item id>.eml``, each file fsynced
with its directory before the index row commits.  The functions under "API" are what the
management API calls (blocking: run them in a thread); release delivers to the inbox
*without* filtering again, because the customer has decided.
"""

from __future__ import annotations

import email.policy
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock, as_utc
from mailplane.config.settings import Settings
from mailplane.mail.mime import MimeTooComplex, parse_email
from mailplane.mail.trace import header_safe
from mailplane.mailstore.maildir import deliver, write_new_file
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage import quarantine_repo
from mailplane.storage.models import QuarantineItem

BODY_PREVIEW_CHARS = 2000


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
    headers: list[tuple[str, str]]
    body_preview: str


def _entry(item: QuarantineItem) -> QuarantineEntry:
    return QuarantineEntry(
        id=item.id,
        address=item.address,
        received_at=as_utc(item.received_at),
        sender=header_safe(item.sender),
        header_from=header_safe(item.header_from),
        subject=header_safe(item.subject),
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


def _body_preview(raw: bytes) -> str:
    """The first text of the message, for the API; empty when there is none, it cannot
    be decoded, or the message is beyond the MIME bounds (``raw`` still shows it)."""
    try:
        message = parse_email(raw)
        part = message.get_body(preferencelist=("plain", "html"))
        text = part.get_content() if part is not None else ""
    except (MimeTooComplex, LookupError, KeyError, ValueError, AttributeError,
            TypeError, UnicodeError, AssertionError):
        text = ""
    return _printable_text(str(text)[:BODY_PREVIEW_CHARS])


def _printable_text(text: str) -> str:
    """Line breaks and tabs kept, other controls and undecodable bytes as ``?``."""
    return "\n".join(header_safe(line.replace("\t", " "), len(line))
                     for line in text.split("\n"))


def _header_text(value: object) -> str:
    """A header value as text for the API (decoded by the parser), header safe: no
    control characters, no undecodable bytes that JSON could not carry."""
    try:
        text = str(value)
    except (ValueError, LookupError, UnicodeError):
        text = ""
    return header_safe(text)


def show_quarantine(
    session_factory: sessionmaker[Session], *, address: str, item_id: str
) -> QuarantineDetail | None:
    """Metadata, raw bytes, decoded headers and a text preview; None if not found."""
    with session_factory() as session:
        item = quarantine_repo.get_item(session, address=address, item_id=item_id)
    if item is None:
        return None
    try:
        raw = Path(item.path).read_bytes()
    except FileNotFoundError:
        return None
    headers_message = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    headers = [(header_safe(name, 200), _header_text(value))
               for name, value in headers_message.items()]
    return QuarantineDetail(_entry(item), raw, headers, _body_preview(raw))


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
        deliver(settings.maildir_root, address, path.read_bytes(), now=clock.now())
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
