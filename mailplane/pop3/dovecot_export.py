"""Dovecot passwd-file export: IMAP/POP3 by Dovecot on the same Maildir and credentials
(SPEC §8: "Production deployments may put Dovecot on the same Maildir and credential store").

Each address gets a line for its POP account and one for its full address, both mapping to
the Maildir the MX service delivers into::

    m1234567:{ARGON2ID}$argon2id$v=19$m=…:uid:gid::/var/mail/d/local::userdb_mail=maildir:…

Dovecot 2.3 verifies argon2-cffi's PHC strings under the ``{ARGON2ID}`` scheme prefix
(checked with ``doveadm pw -t`` against Dovecot 2.3.19).  Suspended addresses are written
with ``nologin=y`` so Dovecot refuses them like mailplane does (003 Art.20(3)).  The file is
written to a temporary name and renamed, so Dovecot never reads half a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from mailplane.config.settings import Settings
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage import credentials_repo

#: PHC prefix → Dovecot password scheme.
_SCHEMES = {"$argon2id$": "{ARGON2ID}", "$argon2i$": "{ARGON2I}"}

Names = Literal["both", "pop_account", "address"]


def passwd_line(
    user: str, password_hash: str, *, uid: int, gid: int, maildir: Path, active: bool
) -> str | None:
    """One passwd-file line, or None when Dovecot cannot verify the hash's scheme."""
    scheme = next((tag for prefix, tag in _SCHEMES.items() if password_hash.startswith(prefix)),
                  None)
    if scheme is None or ":" in password_hash or ":" in str(maildir):
        return None
    extra = [f"userdb_mail=maildir:{maildir}"]
    if not active:
        extra += ["nologin=y", "reason=suspended"]
    return f"{user}:{scheme}{password_hash}:{uid}:{gid}::{maildir}::{' '.join(extra)}"


def export_passwd_file(
    settings: Settings,
    session_factory: sessionmaker[Session],
    path: Path,
    *,
    uid: int | None = None,
    gid: int | None = None,
    names: Names = "both",
) -> int:
    """Write the passwd-file; returns how many lines were written.

    ``uid``/``gid`` are the owner Dovecot accesses the Maildirs as; by default this process's
    (the export normally runs as the user the mail services run as).  Blocking: CLI use.
    """
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    maildir_root = settings.maildir_root.resolve()
    with session_factory() as session:
        credentials = credentials_repo.every(session)
    lines: list[str] = []
    for credential in credentials:
        users = {"both": (credential.pop_account, credential.address),
                 "pop_account": (credential.pop_account,), "address": (credential.address,)}[names]
        for user in users:
            line = passwd_line(
                user.lower(),
                credential.password_hash,
                uid=uid,
                gid=gid,
                maildir=mailbox_dir(maildir_root, credential.address),
                active=credential.active,
            )
            if line is not None:
                lines.append(line)
    _write_atomically(path, "".join(f"{line}\n" for line in lines).encode("utf-8"))
    return len(lines)


def _write_atomically(path: Path, data: bytes) -> None:
    """Mode 640: the file holds password hashes; the dovecot group reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    os.fchmod(fd, 0o640)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
