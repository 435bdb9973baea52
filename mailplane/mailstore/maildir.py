"""Maildir writer (SPEC §8: accepted mail is on disk before the 250).

Layout: ``{maildir_root}/{domain}/{local_part}/{tmp,new,cur}``.  A delivery writes into
``tmp/``, fsyncs the file, renames it into ``new/`` and fsyncs ``new/`` so the rename itself
survives a crash (maildir(5); DESIGN: fsync the directory once per batch).  Files keep the
wire form (CRLF line endings).

File names are ``<epoch>.M<usec>P<pid>Q<n>R<random>.<host>,S=<size>``: the leading epoch is
the delivery time from the injected clock (retention reads it, so tests need no sleeping),
and the Maildir++ ``S=`` size lets the quota check sum names without reading files.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailplane.mailstore.owner import adopt_fd, make_dirs
from mailplane.mailstore.paths import mailbox_dir

_COUNTER = itertools.count()
_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


def ensure_maildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        make_dirs(path / sub)


def write_new_file(path: Path, data: bytes, *, make_parent: Callable[[], None],
                   fsync: bool = True) -> None:
    """Create ``path`` (never overwriting), write all of ``data`` and, with ``fsync``, make
    it durable; on any failure nothing is left behind.  ``make_parent`` runs only when
    the directory is missing — once per mailbox, instead of ``mkdir`` calls on every
    delivery (they showed up in strace of the MX, docs/performance.md)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        make_parent()
        fd = os.open(path, flags, 0o600)
    try:
        adopt_fd(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def rename_into(item: PendingFile) -> None:
    """Move a tmp file to its final name; a missing target directory (removed by a tool
    or an operator since the mailbox was created) is made again rather than failing."""
    try:
        os.rename(item.tmp_path, item.final_path)
    except FileNotFoundError:
        if not item.tmp_path.exists():
            raise
        make_dirs(item.final_path.parent)
        os.rename(item.tmp_path, item.final_path)


def _fsync_path(path: Path, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    _fsync_path(path, 0)


def fsync_dir(path: Path) -> None:
    """Make the names in ``path`` durable (a rename into it, maildir(5))."""
    _fsync_path(path, os.O_DIRECTORY)


#: A file in ``tmp/`` this old is not being written any more, whoever wrote it: a
#: delivery's write, commit and rename take milliseconds (``unfinished`` below).
UNFINISHED_SECONDS = 60.0

_WRITER = re.compile(r"P(?P<pid>\d+)Q\d+R[0-9a-f]+\.(?P<host>[^,]+),")


def unfinished(name: str, *, age_seconds: float) -> bool:
    """Whether the write of ``tmp/`` file ``name`` (one of :func:`unique_name`'s) was
    abandoned: its writer — the process and host in the name, maildir(5) — no longer runs
    on this host, or the file is older than :data:`UNFINISHED_SECONDS` (written on another
    host, or a reused pid)."""
    if age_seconds > UNFINISHED_SECONDS:
        return True
    match = _WRITER.search(name)
    if match is None or match["host"] != _HOST:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: running
        return False
    return False


def unique_name(now: datetime, size: int) -> str:
    seconds = int(now.timestamp())
    return (
        f"{seconds}.M{now.microsecond}P{os.getpid()}Q{next(_COUNTER)}"
        f"R{secrets.token_hex(4)}.{_HOST},S={size}"
    )


def delivered_at(name: str) -> datetime | None:
    """Delivery time encoded in a Maildir file name, or None for foreign names."""
    head = name.split(".", 1)[0]
    if not head.isdigit():
        return None
    return datetime.fromtimestamp(int(head), UTC)


def size_from_name(name: str) -> int | None:
    for field in name.split(":", 1)[0].split(",")[1:]:
        if field.startswith("S=") and field[2:].isdigit():
            return int(field[2:])
    return None


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A message fsynced in ``tmp/``, not yet visible to readers."""

    tmp_path: Path
    final_path: Path
    size: int


def write_tmp(maildir: Path, data: bytes, *, now: datetime, fsync: bool = True) -> PendingFile:
    """Write ``data`` into ``tmp/``; ``fsync=False`` leaves making it durable to the
    caller (one ``syncfs`` for a batch, :mod:`mailplane.mailstore.durability`)."""
    name = unique_name(now, len(data))
    tmp_path = maildir / "tmp" / name
    write_new_file(tmp_path, data, make_parent=lambda: ensure_maildir(maildir), fsync=fsync)
    return PendingFile(tmp_path, maildir / "new" / name, len(data))


def publish(pending: Iterable[PendingFile]) -> None:
    """Rename into ``new/`` and fsync each touched directory once."""
    directories: set[Path] = set()
    for item in pending:
        rename_into(item)
        directories.add(item.final_path.parent)
    for directory in directories:
        fsync_dir(directory)


def discard(pending: Iterable[PendingFile]) -> None:
    """Remove every trace of a failed transaction (tmp or already published)."""
    for item in pending:
        item.tmp_path.unlink(missing_ok=True)
        item.final_path.unlink(missing_ok=True)


def deliver(root: Path, address: str, data: bytes, *, now: datetime) -> Path:
    """Write one message durably into the inbox of ``address`` (blocking)."""
    pending = write_tmp(mailbox_dir(root, address), data, now=now)
    try:
        publish([pending])
    except BaseException:
        discard([pending])
        raise
    return pending.final_path


#: maildir(5): a file in ``tmp/`` not accessed for 36 hours is left by a delivery that died
#: (kill -9 between the write and the rename) and may be removed.
TMP_ORPHAN_SECONDS = 36 * 3600


def tmp_files(tmp: Path) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """The regular files in the ``tmp/`` directory ``tmp`` with their status; files that
    vanish while listed (renamed or removed by a delivery) and an unreadable directory
    are skipped."""
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode):
            yield entry, info


def remove_tmp_orphans(root: Path, *, now: float,
                       older_than: float = TMP_ORPHAN_SECONDS) -> int:
    """Remove files in every ``{root}/{domain}/{local}/tmp/`` — and the ``tmp/`` of each
    of its folders (``.迷惑メール/tmp``, :mod:`~mailplane.mailstore.folders`) — last
    accessed or modified more than ``older_than`` seconds before ``now`` (wall-clock epoch
    seconds); returns how many.  A live delivery's tmp file is seconds old, so this is
    safe while other processes and nodes deliver (blocking: run it in a thread)."""
    removed = 0
    for tmp in itertools.chain(root.glob("*/*/tmp"), root.glob("*/*/.*/tmp")):
        for entry, info in tmp_files(tmp):
            try:
                if max(info.st_atime, info.st_mtime) < now - older_than:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def _counted_dirs(maildir: Path) -> list[Path]:
    """The inbox and every folder (迷惑メール — the quarantine —, 送信済み, 下書き, the
    customer's own): the mailbox quota is the whole mailbox's (SPEC §8), quarantined mail
    included (issue 20), as Dovecot's quota counts every folder."""
    roots = [maildir]
    try:
        roots += [Path(entry.path) for entry in os.scandir(maildir)
                  if entry.name.startswith(".") and entry.name not in (".", "..")
                  and entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    return [root / sub for root in roots for sub in ("new", "cur")]


def mailbox_size(maildir: Path) -> int:
    """Bytes in the whole mailbox: the inbox and every folder (:func:`_counted_dirs`)."""
    return _messages_size(_counted_dirs(maildir))


def folder_size(folder: Path) -> int:
    """Bytes in one folder's messages (``new/`` and ``cur/``), e.g. 迷惑メール's."""
    return _messages_size([folder / "new", folder / "cur"])


def _messages_size(directories: Iterable[Path]) -> int:
    """Sizes from the Maildir names (``S=``), else from the files."""
    total = 0
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            size = size_from_name(entry.name)
            if size is None:
                try:
                    size = entry.stat().st_size
                except FileNotFoundError:
                    continue
            total += size
    return total


def directory_size(directory: Path) -> int:
    """Bytes in the files of one flat directory (a quarantine: a few files of 7 days)."""
    total = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
    return total


class MaildirUsage:
    """Cheap per-address usage for the quota check (SPEC §8, ``452 4.2.2``): the whole
    mailbox — the inbox, the quarantine (the folder 迷惑メール) and every other folder —
    counts against the quota (as Dovecot counts a Junk folder; issue 20).  Given
    ``quarantine_root``, quarantined items still in the layout before 迷惑メール was a
    folder (``{quarantine_root}/{domain}/{local}/``, moved into the folder when the
    address is next reconciled) count too.

    Maildir sizes are summed from file names, old-layout quarantine sizes from the files;
    the figure is cached for ``ttl_seconds``.  Our own deliveries add to the cached figure, so only
    deletions by readers (POP3, purge, quarantine release or delete) are seen late —
    which errs on the side of a retried 452, never a lost message.
    """

    def __init__(self, root: Path, quarantine_root: Path | None = None, *,
                 ttl_seconds: float = 30.0) -> None:
        self._root = root
        self._quarantine_root = quarantine_root
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def used(self, address: str) -> int:
        """Blocking (scans a directory when the cache is stale): call from a thread."""
        cached = self.cached(address)
        if cached is not None:
            return cached
        size = mailbox_size(mailbox_dir(self._root, address))
        if self._quarantine_root is not None:
            size += directory_size(mailbox_dir(self._quarantine_root, address))
        with self._lock:
            self._cache[address] = (size, time.monotonic())
        return size

    def cached(self, address: str) -> int | None:
        """The cached figure if one is fresh, without touching the disk (event loop safe)."""
        with self._lock:
            cached = self._cache.get(address)
        if cached is not None and time.monotonic() - cached[1] < self._ttl:
            return cached[0]
        return None

    def add(self, address: str, size: int) -> None:
        """Count ``size`` more bytes (negative: fewer) in a cached figure."""
        with self._lock:
            cached = self._cache.get(address)
            if cached is not None:
                self._cache[address] = (cached[0] + size, cached[1])

    def forget(self, address: str) -> None:
        with self._lock:
            self._cache.pop(address, None)
