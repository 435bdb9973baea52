"""Who owns the mail tree (SPEC §9b: Dovecot serves the same Maildirs).

Dovecot never reads or writes mail as root (``userdb returned 0 as uid``).  A node that
runs as a service user owns its files itself and nothing here changes anything.  A node
that runs as root — a container, ``make run`` as root — hands every file and directory it
creates under the mail tree to an unprivileged system user (``[imap] mail_owner``), so
Dovecot's mail processes, running as that user, can serve them; root still reads and
removes everything.  Process-wide, like the umask: the node sets it once at start-up
(:func:`configure`), before any mail is written.
"""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

log = logging.getLogger(__name__)

_owner: tuple[int, int] | None = None


def configure(user: str | None) -> tuple[int, int] | None:
    """Use ``user`` as the owner of new mail files when this process is root; None or a
    non-root process: files keep the process's own owner.  Raises KeyError for a user
    the system does not know."""
    global _owner
    if user is None or os.geteuid() != 0:
        _owner = None
        return None
    entry = pwd.getpwnam(user)
    if entry.pw_uid == 0:
        raise KeyError(f"{user} is root")
    _owner = (entry.pw_uid, entry.pw_gid)
    return _owner


def mail_uid_gid() -> tuple[int, int]:
    """The uid and gid Dovecot serves the mail as: the configured owner, else ours."""
    return _owner if _owner is not None else (os.geteuid(), os.getegid())


def adopt_fd(fd: int) -> None:
    if _owner is not None:
        os.fchown(fd, *_owner)


def adopt_path(path: Path) -> None:
    if _owner is not None:
        os.chown(path, *_owner, follow_symlinks=False)


def make_dirs(path: Path) -> None:
    """``mkdir -p path``, each directory created here handed to the owner."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        adopt_path(directory)


def adopt_tree(root: Path) -> int:
    """Hand ``root`` and everything under it to the owner (a tree an older run wrote as
    root); returns how many entries changed.  Blocking: call it in a thread at start."""
    if _owner is None or not root.exists():
        return 0
    changed = 0
    uid, gid = _owner
    for directory, _, files in os.walk(root):
        for name in (directory, *(os.path.join(directory, n) for n in files)):
            try:
                info = os.lstat(name)
                if (info.st_uid, info.st_gid) != (uid, gid):
                    os.chown(name, uid, gid, follow_symlinks=False)
                    changed += 1
            except FileNotFoundError:
                continue
    if changed:
        log.info("handed %d mail file(s) and folder(s) under %s to uid %d", changed, root, uid)
    return changed
