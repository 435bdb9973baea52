"""Per-address quarantine (SPEC §4, §9b): the bytes are the address's 迷惑メール folder,
the index is in the database.

The folder is a Maildir++ folder of the address's own Maildir
(:mod:`mailplane.mailstore.folders`), so IMAP clients and the webmail see the quarantine
as 迷惑メール while POP3 still sees the inbox alone.  The MX writes a quarantined copy like
an inbox copy — ``tmp/``, fsync, the index row committed, then renamed into ``new/`` — and
the row records that file; IMAP clients may then move it to ``cur/`` and change its flags,
which keeps its *base name*, so a row always finds its file by that name
(:func:`~mailplane.mailstore.folders.find_message`).

The folder is the truth, the index follows it (:func:`reconcile`, run before every read
the API makes and by the periodic jobs): a row whose file is gone — released to the inbox
or deleted by an IMAP client (a MOVE to INBOX is Dovecot's copy into the inbox and an
expunge here: no filtering again, as the portal's 受信箱へ移動) — is dropped; a message a
client put into the folder gets a row (reason ``moved``) and expires like any other.
Every removal here takes the file first and the row second, so no reader ever meets a
file without its row that is not really new.  Items written before the quarantine was a
folder (``{quarantine_root}/{domain}/{local}/<id>.eml``) are moved into the folder the
first time the address is reconciled.

The functions under "API" are what the management API calls (blocking: run them in a
thread); release delivers to the inbox *without* filtering again, because the customer
has decided.
"""

from __future__ import annotations

import email.errors
import email.header
import email.policy
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesParser
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock, as_utc
from mailplane.config.settings import Settings
from mailplane.mail.preview import MessageView, display_header, message_view
from mailplane.mail.trace import header_safe
from mailplane.mailstore.folders import (
    QUARANTINE,
    base_name,
    ensure_folder,
    find_message,
    folder_dir,
    in_flight,
    messages,
)
from mailplane.mailstore.maildir import (
    PendingFile,
    deliver,
    fsync_dir,
    publish,
    tmp_files,
    unfinished,
    unique_name,
    write_new_file,
)
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage import quarantine_repo
from mailplane.storage.models import QuarantineItem

log = logging.getLogger(__name__)

#: The reason of a message an IMAP client put into 迷惑メール itself.
MOVED_REASON = "moved"
#: Header text kept in the index (the planner's bound for what the MX indexes).
_INDEX_TEXT_CHARS = 998
#: Bytes of a moved-in message read for its index row (its headers).
_HEADER_BYTES = 64 * 1024


def quarantine_dir(settings: Settings, address: str) -> Path:
    """The address's quarantine: the 迷惑メール folder of its Maildir."""
    return folder_dir(mailbox_dir(settings.maildir_root, address), QUARANTINE)


def new_item_id(now: datetime) -> str:
    return f"{int(now.timestamp())}-{secrets.token_hex(8)}"


def write_item_tmp(folder: Path, data: bytes, *, now: datetime,
                   fsync: bool = True) -> PendingFile:
    """Write one quarantined message into the folder's ``tmp/`` (blocking); the caller
    commits its row, then renames it into ``new/`` (:func:`~mailplane.mailstore.maildir.
    rename_into`) — never visible to IMAP before its row exists."""
    name = unique_name(now, len(data))
    tmp_path = folder / "tmp" / name
    write_new_file(tmp_path, data, make_parent=lambda: ensure_folder(folder), fsync=fsync)
    return PendingFile(tmp_path, folder / "new" / name, len(data))


def write_item_file(directory: Path, item_id: str, data: bytes, *, fsync: bool = True) -> Path:
    """Write one message at ``{directory}/{item_id}.eml`` (the layout before the
    quarantine was a folder; kept for tools and tests that build such items)."""
    path = directory / f"{item_id}.eml"
    write_new_file(path, data, fsync=fsync,
                   make_parent=lambda: directory.mkdir(parents=True, exist_ok=True))
    return path


def _in_folder(folder: Path, path: Path) -> bool:
    return path.parent.parent == folder and path.parent.name in ("tmp", "new", "cur")


def locate(settings: Settings, item: QuarantineItem) -> Path | None:
    """Where the item's message is now, or None when it has left the quarantine."""
    path = Path(item.path)
    folder = quarantine_dir(settings, item.address)
    if not _in_folder(folder, path):
        return path if path.is_file() else None
    return find_message(folder, base_name(path.name))


def _read(settings: Settings, item: QuarantineItem) -> bytes | None:
    """The item's bytes; an IMAP client renaming it meanwhile is followed."""
    for _ in range(3):
        path = locate(settings, item)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            continue
    return None


def _remove_file(settings: Settings, item: QuarantineItem) -> bool:
    """Unlink the item's message wherever it is now (following renames); True if this
    call removed it (of several removing at once, exactly one does)."""
    for _ in range(3):
        path = locate(settings, item)
        if path is None:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        fsync_dir(path.parent)
        return True
    return False


# --- the index follows the folder ------------------------------------------------------


def _still_there(folder: Path, base: str) -> bool:
    """A fresh look after the rows were read: in ``tmp/`` (a delivery still writing, its
    row committed before the rename), ``new/`` or ``cur/``."""
    return (folder / "tmp" / base).exists() or find_message(folder, base) is not None


def _found_item(address: str, path: Path, now: datetime) -> QuarantineItem | None:
    """The index row of a message an IMAP client put into the folder."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES)
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    headers = BytesParser(policy=email.policy.compat32).parsebytes(head, headersonly=True)
    digest = hashlib.sha256(f"{address}\0{base_name(path.name)}".encode()).hexdigest()
    return QuarantineItem(
        id=f"m-{digest[:40]}", address=address, received_at=now, sender="",
        header_from=header_safe(_decoded(headers.get("From")), _INDEX_TEXT_CHARS),
        subject=header_safe(_decoded(headers.get("Subject")), _INDEX_TEXT_CHARS),
        reason=MOVED_REASON, size=size, path=str(path), notified=True)


def _decoded(value: object) -> str:
    if value is None:
        return ""
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return str(value)


def _adopt_old_item(settings: Settings, session_factory: sessionmaker[Session],
                    item: QuarantineItem, clock: Clock) -> None:
    """Move an item of the store before 迷惑メール was a folder into the folder: the copy
    is durable and its row points at it before the old file goes."""
    old = Path(item.path)
    try:
        data = old.read_bytes()
    except FileNotFoundError:
        return
    pending = write_item_tmp(quarantine_dir(settings, item.address), data, now=clock.now())
    publish([pending])
    with session_factory() as session:
        quarantine_repo.move_item(session, item_id=item.id, path=str(pending.final_path))
        session.commit()
    old.unlink(missing_ok=True)


def finish_interrupted(settings: Settings, session_factory: sessionmaker[Session], *,
                       now: float) -> int:
    """Publish the 迷惑メール copies whose index rows committed but whose rename into
    ``new/`` never happened: the delivery died between the two (``delivery/store.py``
    commits the rows, then renames).  The committed row is the commit point — the portal
    lists the item and the digest may name it — so its file is moved where the row says,
    as the delivery would have.  Only abandoned writes are touched
    (:func:`~mailplane.mailstore.maildir.unfinished`: their process is gone, or they are
    a minute old); a file with no row is an uncommitted write, left to the 36-hour orphan
    sweep.  Run at start and by housekeeping (blocking); returns how many it published."""
    folder_name = folder_dir(Path("."), QUARANTINE).name
    abandoned: dict[str, PendingFile] = {}
    for tmp in settings.maildir_root.glob(f"*/*/{folder_name}/tmp"):
        for entry, info in tmp_files(tmp):
            if unfinished(entry.name, age_seconds=now - info.st_mtime):
                final = tmp.parent / "new" / entry.name
                abandoned[str(final)] = PendingFile(Path(entry.path), final, info.st_size)
    if not abandoned:
        return 0
    with session_factory() as session:
        committed = quarantine_repo.committed_paths(session, paths=abandoned)
    finished = 0
    for path in sorted(committed):
        try:
            publish([abandoned[path]])
        except FileNotFoundError:  # finished meanwhile (another node's housekeeping)
            continue
        finished += 1
    if finished:
        log.warning("published %d quarantined message(s) whose delivery was interrupted"
                    " after its commit", finished)
    return finished


def reconcile(settings: Settings, session_factory: sessionmaker[Session], *,
              address: str, clock: Clock) -> None:
    """Make the index of ``address`` match its 迷惑メール folder (blocking).

    The folder is listed *before* the rows are read: a message the MX quarantines is
    renamed into ``new/`` only after its row committed, so every file listed that has no
    row was put there by a client.  A row whose file was not listed is looked for again
    (it may have been in ``tmp/`` or renamed meanwhile) before it is dropped.  Safe to run
    on several nodes at once: rows of found messages have ids derived from the message,
    and inserting one twice is a no-op."""
    folder = quarantine_dir(settings, address)
    listed = messages(folder)
    writing = in_flight(folder)
    with session_factory() as session:
        rows = quarantine_repo.list_for_address(session, address=address)
    known: set[str] = set()
    gone: list[str] = []
    old_layout: list[QuarantineItem] = []
    for row in rows:
        path = Path(row.path)
        if not _in_folder(folder, path):
            if path.is_file():
                old_layout.append(row)
            else:
                gone.append(row.id)
            continue
        base = base_name(path.name)
        known.add(base)
        if base not in listed and base not in writing and not _still_there(folder, base):
            gone.append(row.id)
    now = clock.now()
    found = [item for base, path in listed.items() if base not in known
             if (item := _found_item(address, path, now)) is not None]
    if gone or found:
        with session_factory() as session:
            quarantine_repo.delete_items(session, item_ids=gone)
            quarantine_repo.add_items_once(session, items=found)
            session.commit()
        log.info("quarantine of %s follows its folder: %d gone, %d moved in", address,
                 len(gone), len(found))
    for item in old_layout:
        _adopt_old_item(settings, session_factory, item, clock)


def reconcile_addresses(settings: Settings, session_factory: sessionmaker[Session],
                        clock: Clock, *, unnotified_only: bool = False) -> int:
    """:func:`reconcile` every address that has quarantine rows (the periodic jobs: the
    digest must not list what a client already moved out); returns how many."""
    with session_factory() as session:
        addresses = quarantine_repo.addresses_with_items(session,
                                                         unnotified_only=unnotified_only)
    for address in addresses:
        try:
            reconcile(settings, session_factory, address=address, clock=clock)
        except OSError as exc:
            log.warning("quarantine of %s not reconciled: %s", address, exc)
    return len(addresses)


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
    settings: Settings, session_factory: sessionmaker[Session], *, address: str, clock: Clock
) -> list[QuarantineEntry]:
    """Quarantined messages of one address, newest first, as the 迷惑メール folder holds
    them now."""
    reconcile(settings, session_factory, address=address, clock=clock)
    with session_factory() as session:
        return [_entry(i) for i in quarantine_repo.list_for_address(session, address=address)]


def _item(settings: Settings, session_factory: sessionmaker[Session], *, address: str,
          item_id: str, clock: Clock) -> QuarantineItem | None:
    """The row, if its message is still in the quarantine (the index first follows the
    folder, so an item an IMAP client moved out is not found)."""
    with session_factory() as session:
        item = quarantine_repo.get_item(session, address=address, item_id=item_id)
    if item is None:
        return None
    if locate(settings, item) is None:
        reconcile(settings, session_factory, address=address, clock=clock)
        return None
    return item


def show_quarantine(
    settings: Settings, session_factory: sessionmaker[Session], *, address: str,
    item_id: str, clock: Clock,
) -> QuarantineDetail | None:
    """Metadata, raw bytes and the view (headers, text, sanitised HTML); None if not
    found.  Blocking (parsing, nh3): the API runs it in a thread."""
    item = _item(settings, session_factory, address=address, item_id=item_id, clock=clock)
    if item is None:
        return None
    raw = _read(settings, item)
    if raw is None:
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

    Order keeps "nothing is lost": the inbox copy is durable before the quarantine copy
    goes, and the quarantine copy before its row; a crash in between leaves a duplicate
    in 迷惑メール (or a row the next reconcile drops), never a lost message.
    """
    item = _item(settings, session_factory, address=address, item_id=item_id, clock=clock)
    if item is None:
        return False
    data = _read(settings, item)
    if data is None:
        return False
    deliver(settings.maildir_root, address, data, now=clock.now())
    _remove_file(settings, item)
    with session_factory() as session:
        quarantine_repo.delete_items(session, item_ids=[item.id])
        session.commit()
    return True


def delete_quarantine(
    settings: Settings, session_factory: sessionmaker[Session], *, address: str,
    item_id: str, clock: Clock,
) -> bool:
    """Delete one quarantined message (the file, then its row)."""
    item = _item(settings, session_factory, address=address, item_id=item_id, clock=clock)
    if item is None:
        return False
    _remove_file(settings, item)
    with session_factory() as session:
        quarantine_repo.delete_items(session, item_ids=[item.id])
        session.commit()
    return True


def delete_quarantine_many(
    settings: Settings, session_factory: sessionmaker[Session], *, address: str,
    item_ids: list[str], clock: Clock,
) -> int:
    """Delete several quarantined messages of one address (files first, then their rows
    in one transaction); returns how many this call deleted.  Ids of other addresses, and
    ids already gone, are left alone: a repeated request deletes nothing more."""
    with session_factory() as session:
        items = quarantine_repo.items_of(session, address=address, item_ids=item_ids)
    # Counted by the file: a delete running at the same time (or a reconcile that saw the
    # file gone) may take the row, but only one unlink of a file succeeds.
    deleted = sum(_remove_file(settings, item) for item in items)
    with session_factory() as session:
        quarantine_repo.delete_items(session, item_ids=[item.id for item in items])
        session.commit()
    return deleted


def purge_expired(settings: Settings, session_factory: sessionmaker[Session], *,
                  cutoff: datetime) -> int:
    """Items received before ``cutoff`` (SPEC §4: kept 7 days): files, then rows."""
    with session_factory() as session:
        items = quarantine_repo.list_received_before(session, cutoff=cutoff)
    for item in items:
        _remove_file(settings, item)
    with session_factory() as session:
        quarantine_repo.delete_items(session, item_ids=[item.id for item in items])
        session.commit()
    return len(items)
