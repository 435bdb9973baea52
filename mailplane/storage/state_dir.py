"""The state directory, the SQLite database and generated secrets are private to the service
user (issue 15; non-negotiable 6): the database holds password and key hashes, and a
generated secret is as good as a configured one.

Directories are created 0700 and files 0600 where they are made, and tightened when an
older release left them readable; SQLite gives its ``-wal`` and ``-shm`` files the mode
of the database file, and :func:`mailplane.storage.db.make_engine` tightens ones that an
older release created.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
TRAVERSABLE_DIR_MODE = 0o711
PRIVATE_FILE_MODE = 0o600


def _tighten(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
        if current & ~mode:
            os.chmod(path, current & mode)
    except FileNotFoundError:
        return
    except PermissionError:
        log.warning("%s is readable by other users and not ours to change (chmod %o)",
                    path, mode)


def private_dir(path: Path, *, traversable: bool = False) -> None:
    """``path`` exists and only its owner may enter it — or, ``traversable``, others may
    pass through it to what they own below (never list it): the mail tree's owner when a
    root node hands the Maildirs to Dovecot's user (SPEC §9b)."""
    mode = TRAVERSABLE_DIR_MODE if traversable else PRIVATE_DIR_MODE
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    if traversable:
        os.chmod(path, mode)
        return
    with contextlib.suppress(FileNotFoundError):
        if stat.S_IMODE(path.stat().st_mode) == TRAVERSABLE_DIR_MODE:
            return  # made passable on purpose by a root node (above): kept
    _tighten(path, mode)


def private_file(path: Path) -> None:
    """``path`` exists (empty if new) and only its owner may read it.  Creating it here,
    with the mode in ``open``, leaves no moment in which another user could open it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        _tighten(path, PRIVATE_FILE_MODE)


def tighten_files(*paths: Path) -> None:
    """Make each existing file owner-only (files another program created, e.g. SQLite's
    ``-wal`` and ``-shm`` left by an older release)."""
    for path in paths:
        _tighten(path, PRIVATE_FILE_MODE)


def secret_file(path: Path, *, nbytes: int = 32) -> str:
    """The secret in ``path``, generated once (mode 600) if the file does not exist.

    For one node that nobody configured; several nodes sharing a database must configure
    one value instead, or each would generate its own.
    """
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    secret = secrets.token_urlsafe(nbytes)
    # Written whole under a temporary name, then linked into place: a process racing us
    # either finds no file or the complete one, never an empty file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:  # another process won the race: use its secret
            return path.read_text(encoding="utf-8").strip()
    finally:
        temporary.unlink(missing_ok=True)
    return secret
