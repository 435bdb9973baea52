"""The folders of a mailbox besides the inbox, laid out as Dovecot keeps them (SPEC §9b).

Maildir++ (Dovecot's default layout): the inbox is the Maildir itself and every other
folder is ``{maildir}/.<name>/`` with its own ``tmp/ new/ cur/``, the name in IMAP's
modified UTF-7 (RFC 3501 §5.1.3), so Dovecot and mailplane find the same directory:
``迷惑メール`` is ``.&j,dg0TDhMPww6w-``.  POP3 and the inbox retention read the inbox's own
``new/`` and ``cur/`` only, so no folder ever reaches them; the mailbox quota counts every
folder (:func:`~mailplane.mailstore.maildir.mailbox_size`).

A message keeps its *base name* (the file name before ``:2,<flags>``) while IMAP clients
move it from ``new/`` to ``cur/`` and change its flags: :func:`find_message` is how a file
recorded earlier is found again.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from mailplane.mailstore.maildir import ensure_maildir
from mailplane.mailstore.owner import adopt_path

#: The quarantine of an address, shown to IMAP clients and the webmail (SPEC §4, §9b).
QUARANTINE = "迷惑メール"
#: Where the webmail keeps what it sent (SPEC §9b), its drafts and its wastebasket.
SENT = "送信済み"
DRAFTS = "下書き"
TRASH = "ごみ箱"

#: Courier's and Dovecot's marker of a Maildir++ folder (not the inbox).
FOLDER_MARKER = "maildirfolder"


def encode_mutf7(name: str) -> str:
    """IMAP's modified UTF-7 (RFC 3501 §5.1.3): printable ASCII as itself (``&`` as
    ``&-``), everything else as UTF-16 in base64 with ``,`` for ``/`` between ``&`` and
    ``-``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=")
                       .replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_mutf7(name: str) -> str:
    """The inverse of :func:`encode_mutf7` (for names read back from an IMAP server)."""
    out: list[str] = []
    rest = name
    while rest:
        head, amp, rest = rest.partition("&")
        out.append(head)
        if not amp:
            break
        encoded, dash, rest = rest.partition("-")
        if not dash:
            raise ValueError(f"unterminated shift in {name!r}")
        if not encoded:
            out.append("&")
            continue
        padded = encoded.replace(",", "/") + "=" * (-len(encoded) % 4)
        out.append(base64.b64decode(padded).decode("utf-16-be"))
    return "".join(out)


def folder_dir(maildir: Path, name: str) -> Path:
    """The directory of folder ``name`` in the Maildir ``maildir``."""
    return maildir / ("." + encode_mutf7(name))


def ensure_folder(path: Path) -> None:
    """``path`` is a Maildir++ folder: ``tmp/ new/ cur/`` and the marker file."""
    ensure_maildir(path)
    marker = path / FOLDER_MARKER
    if not marker.exists():
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        adopt_path(marker)


def base_name(file_name: str) -> str:
    """A Maildir file's unique name: what stays when a reader renames it (``:2,flags``)."""
    return file_name.split(":", 1)[0]


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return [entry for entry in os.scandir(directory) if not entry.name.startswith(".")]
    except FileNotFoundError:
        return []


def messages(folder: Path) -> dict[str, Path]:
    """Every message of the folder (``new/`` and ``cur/``) by base name."""
    found: dict[str, Path] = {}
    for sub in ("new", "cur"):
        for entry in _entries(folder / sub):
            found.setdefault(base_name(entry.name), Path(entry.path))
    return found


def in_flight(folder: Path) -> set[str]:
    """Base names in ``tmp/``: files still being written (not yet messages)."""
    return {base_name(entry.name) for entry in _entries(folder / "tmp")}


def find_message(folder: Path, base: str) -> Path | None:
    """Where the message ``base`` is now, or None.  Readers only ever move a file forward
    (``new/`` → ``cur/``, then flag renames inside ``cur/``), so looking in that order sees
    a file that exists throughout; a second pass covers a rename that raced the first."""
    for _ in range(2):
        for sub in ("new", "cur"):
            for entry in _entries(folder / sub):
                if base_name(entry.name) == base:
                    return Path(entry.path)
    return None
