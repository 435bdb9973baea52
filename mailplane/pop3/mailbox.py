"""One address's Maildir as a POP3 session sees it (RFC 1939 §8, SPEC §8).

Blocking on purpose — every call here runs in a thread.  The mailbox is locked for the whole
session with ``flock`` on ``{maildir}/.pop3.lock``: the lock is held by an open file, so it is
released by the kernel if the process dies, and it is honoured by every process and node that
mounts the same volume (RFC 1939 §8 asks for an exclusive-access lock).  Only the inbox
is visible: the quarantine and the other folders IMAP clients see (``.迷惑メール/``,
``.送信済み/``, :mod:`mailplane.mailstore.folders`) are never listed here.

Dovecot serves the same Maildir over IMAP (SPEC §9b) and does not take this lock: while a
POP3 session runs, an IMAP client may rename a message (``new/`` → ``cur/``, a flag
change).  A message keeps its unique name through such renames, and RETR, TOP and DELE
find it by that name (:meth:`Mailbox.locate`), so the two readers at once lose nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mailplane.mailstore.folders import find_message
from mailplane.mailstore.maildir import ensure_maildir, fsync_dir
from mailplane.pop3.encoding import wire_size

LOCK_FILE = ".pop3.lock"
#: RFC 1939 §7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
_UIDL_OK = re.compile(r"[\x21-\x7e]{1,70}")
#: Dovecot's Maildir name fields: ``,S=<physical size>`` and ``,W=<size with CRLF>``.
_WIRE_SIZE_FIELD = re.compile(r",W=(\d+)")


@dataclass(slots=True)
class StoredMessage:
    path: Path
    uid: str
    size: int


def unique_name(file_name: str) -> str:
    """The Maildir unique name (the part before ``:2,flags``), as UIDL if it is valid."""
    base = file_name.split(":", 1)[0]
    if _UIDL_OK.fullmatch(base):
        return base
    return hashlib.sha256(base.encode("utf-8", "surrogateescape")).hexdigest()[:40]


class MailboxInUse(Exception):
    """Another POP3 session (on any node) holds the mailbox."""


class Mailbox:
    """A locked Maildir; build with :meth:`open` and always :meth:`close`."""

    def __init__(self, root: Path, lock: BinaryIO, messages: list[StoredMessage]) -> None:
        self.root = root
        self._lock = lock
        self.messages = messages

    @classmethod
    def open(cls, root: Path) -> Mailbox:
        """Lock, move ``new/`` into ``cur/`` (Maildir delivery is seen), list ``cur/``."""
        ensure_maildir(root)
        lock = open(root / LOCK_FILE, "a+b")  # noqa: SIM115 - held for the whole session
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise MailboxInUse(str(root)) from None
        try:
            _move_new_to_cur(root)
            messages = _scan(root / "cur")
        except BaseException:
            _release(lock)
            raise
        return cls(root, lock, messages)

    def locate(self, message: StoredMessage) -> Path | None:
        """Where the message is now: where it was listed, or renamed by an IMAP client;
        None once it was deleted (by IMAP, or the retention purge)."""
        if message.path.exists():
            return message.path
        base = message.path.name.split(":", 1)[0]
        return find_message(self.root, base)

    def delete(self, messages: list[StoredMessage]) -> int:
        """Remove the messages (the UPDATE state); returns how many could not be removed."""
        failed = 0
        directories: set[Path] = {self.root / "cur"}
        for message in messages:
            for _ in range(3):
                path = self.locate(message)
                if path is None:
                    break  # already gone (IMAP, retention purge): the intent is met
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue  # renamed by an IMAP client between the look and the unlink
                except OSError:
                    failed += 1
                directories.add(path.parent)
                break
        for directory in directories:
            fsync_dir(directory)
        return failed

    def close(self) -> None:
        _release(self._lock)


def _release(lock: BinaryIO) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    lock.close()


def _move_new_to_cur(root: Path) -> None:
    moved = False
    for entry in os.scandir(root / "new"):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        target = root / "cur" / (entry.name if ":" in entry.name else f"{entry.name}:2,")
        try:
            os.rename(entry.path, target)
            moved = True
        except FileNotFoundError:
            continue
    if moved:
        fsync_dir(root / "new")
        fsync_dir(root / "cur")


def _scan(cur: Path) -> list[StoredMessage]:
    found: list[tuple[int, str, StoredMessage]] = []
    for entry in os.scandir(cur):
        if entry.name.startswith("."):
            continue
        try:
            if not entry.is_file():
                continue
            mtime = entry.stat().st_mtime_ns
            size = _known_wire_size(entry.name)
            if size is None:
                size = wire_size(Path(entry.path))
        except FileNotFoundError:
            continue
        message = StoredMessage(Path(entry.path), unique_name(entry.name), size)
        found.append((mtime, entry.name, message))
    found.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in found]


def _known_wire_size(file_name: str) -> int | None:
    match = _WIRE_SIZE_FIELD.search(file_name.split(":", 1)[0])
    return int(match.group(1)) if match else None
