"""Connection counts shared by the MX processes of one node (SPEC §8a), after Postfix's
anvil(8), which counts connections per client for the whole instance, not per smtpd.

With ``mx.workers = N`` the node's N MX processes accept on one port (``SO_REUSEPORT``),
and the kernel spreads one client's connections over all of them.  Per-process counts
would let a client hold N × ``max_connections_per_ip`` sessions, so the limits of the MX
listener are counted here, in one small file mapped into every MX process of the node:

- **Layout** — a header (magic, geometry, a random hash key) and one *row* per process:
  the owner's pid and start time, its session count, and per client bucket its sessions
  and its admissions in the current and previous minute.  A client key (an IP, an IPv6
  /64) maps to one of :data:`BUCKETS` buckets through a keyed BLAKE2b: two clients share a
  count only if their keyed hashes collide (rarely, and not on purpose: the key is
  secret).  Each process writes only its own row; a count is the sum over live rows.
- **Exact** — admission (check, then add) runs under ``flock`` on the file, so two
  processes never both admit the last place.  A release only lowers the own row.
- **Crash-proof** — nothing is ever "given back" by a process that died: its row simply
  stops counting once its pid is gone (or belongs to a newer process: the start time
  is compared), and its place is taken by the next process that starts.  A kill -9
  leaks nothing.
- **Cost** — a keyed hash, one ``flock``/unlock pair and a read of N rows per accepted
  connection; a few microseconds.

The node's first process creates the file (:func:`create_counts_file`, in ``/dev/shm``
when it can, mode 600) before it starts the others and removes it when it stops; a file
left by a node that was killed is removed by the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import secrets
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: Client buckets per process row.
BUCKETS = 16384
MAGIC = b"MPANVIL1"
#: The rate window (``connections_per_ip_per_minute``), as in :mod:`mailplane.net.limits`.
WINDOW_SECONDS = 60.0
#: How often the liveness of the other rows' processes is checked.
LIVENESS_SECONDS = 1.0

_HEADER = struct.Struct("=8sII16s")  # magic, rows, buckets, hash key
_GENERATION_AT = 32  # int64: bumped whenever a row changes hands
_HEADER_SIZE = 64
_ROW_HEADER = 4  # int64: pid, start time (clock ticks after boot), sessions, reserved
_BUCKET_FIELDS = 4  # int32: sessions, rate window, admissions in it, in the one before
_ROW_SIZE = _ROW_HEADER * 8 + BUCKETS * _BUCKET_FIELDS * 4
_FILE_PREFIX = "mailplane-anvil-"


def _process_start(pid: int) -> int | None:
    """The start time of ``pid`` (``/proc/<pid>/stat`` field 22), None if it is gone —
    or dead and not yet reaped (a zombie: a killed MX process stays one until the node
    joins it)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def _run_directories() -> list[Path]:
    shm = Path("/dev/shm")
    return [shm, Path(tempfile.gettempdir())] if shm.is_dir() else [
        Path(tempfile.gettempdir())]


def create_counts_file(rows: int) -> Path:
    """Create the counts file of a node with ``rows`` process rows (the node's first
    process, before it starts the others); files of nodes that died are removed first."""
    last_error: OSError | None = None
    for directory in _run_directories():
        _remove_stale(directory)
        path = directory / f"{_FILE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            last_error = exc
            continue
        try:
            os.ftruncate(fd, _HEADER_SIZE + rows * _ROW_SIZE)
            os.pwrite(fd, _HEADER.pack(MAGIC, rows, BUCKETS, secrets.token_bytes(16)), 0)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return path
    raise OSError(f"cannot create the node's connection counts: {last_error}")


def _remove_stale(directory: Path) -> None:
    """Files of nodes whose first process is gone (killed: nothing removed them)."""
    with contextlib.suppress(OSError):
        for entry in directory.glob(f"{_FILE_PREFIX}*"):
            pid = entry.name[len(_FILE_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and _process_start(int(pid)) is None \
                    and entry.stat().st_uid == os.getuid():
                entry.unlink(missing_ok=True)


class NodeCounts:
    """One process's view of the node's counts (see the module docstring); implements
    :class:`mailplane.net.limits.ConnectionCounts`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(self._fd).st_size
            self._map = mmap.mmap(self._fd, size)
        except OSError:
            os.close(self._fd)
            raise
        magic, self._rows, buckets, self._key = _HEADER.unpack_from(self._map, 0)
        if magic != MAGIC or buckets != BUCKETS or size < _HEADER_SIZE + self._rows * _ROW_SIZE:
            self._map.close()
            os.close(self._fd)
            raise ValueError(f"{path} is not a connection counts file of this version")
        self._heads = [memoryview(self._map)[self._row_offset(r):
                                             self._row_offset(r) + _ROW_HEADER * 8].cast("q")
                       for r in range(self._rows)]
        self._buckets = [memoryview(self._map)[self._row_offset(r) + _ROW_HEADER * 8:
                                               self._row_offset(r) + _ROW_SIZE].cast("i")
                         for r in range(self._rows)]
        self._generation = memoryview(self._map)[_GENERATION_AT:_GENERATION_AT + 8].cast("q")
        self._pid = os.getpid()
        self._live: list[int] = []
        self._live_generation = -1
        self._checked_at = -LIVENESS_SECONDS
        self._last_key = ""
        self._last_index = -1
        with self._exclusive():
            self._row = self._claim_row()
        self._own_head = self._heads[self._row]
        self._own = self._buckets[self._row]

    _closed = False

    def close(self) -> None:
        """Give up this process's row (idempotent); counting after it is a no-op, so
        sessions that end after the listener has stopped release into nothing."""
        if self._closed:
            return
        self._closed = True
        heads = getattr(self, "_heads", [])
        row = getattr(self, "_row", None)
        if row is not None:
            with contextlib.suppress(OSError, ValueError), self._exclusive():
                heads[row][0] = 0  # the place is free for the next process
        for view in [*heads, *getattr(self, "_buckets", [])]:
            view.release()
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    # --- rows --------------------------------------------------------------------------

    @staticmethod
    def _row_offset(row: int) -> int:
        return _HEADER_SIZE + row * _ROW_SIZE

    def _claim_row(self) -> int:
        """A free row (never used, or its process is gone), cleared and made ours."""
        start = _process_start(self._pid) or 0
        for row, head in enumerate(self._heads):
            if head[0] == 0 or not self._alive(head):
                head[0] = 0
                offset = self._row_offset(row) + _ROW_HEADER * 8
                self._map[offset:self._row_offset(row) + _ROW_SIZE] = bytes(
                    _ROW_SIZE - _ROW_HEADER * 8)
                head[1], head[2], head[3] = start, 0, 0
                head[0] = self._pid
                self._generation[0] += 1
                return row
        raise RuntimeError(f"{self.path}: all {self._rows} process rows are taken")

    @staticmethod
    def _alive(head: memoryview) -> bool:
        pid = int(head[0])
        return pid != 0 and _process_start(pid) == int(head[1])

    def _live_rows(self) -> list[int]:
        """Rows whose process lives: checked in ``/proc`` every :data:`LIVENESS_SECONDS`
        (a process killed without stopping), and at once when a row changed hands (a
        process started or stopped: the generation moved)."""
        now = time.monotonic()
        generation = self._generation[0]
        if generation != self._live_generation or now - self._checked_at >= LIVENESS_SECONDS:
            self._checked_at = now
            self._live_generation = generation
            self._live = [row for row, head in enumerate(self._heads)
                          if row == self._row or self._alive(head)]
        return self._live

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _bucket(self, key: str) -> int:
        """The first field of ``key``'s bucket (admission asks for one key several times
        in a row: the last one is remembered)."""
        if key == self._last_key:
            return self._last_index
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), key=self._key,
                                 digest_size=4).digest()
        self._last_key = key
        self._last_index = int.from_bytes(digest, "little") % BUCKETS * _BUCKET_FIELDS
        return self._last_index

    # --- ConnectionCounts ---------------------------------------------------------------

    def locked(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if self._closed else self._exclusive()

    def total(self) -> int:
        if self._closed:
            return 0
        return sum(int(self._heads[row][2]) for row in self._live_rows())

    def of(self, key: str) -> int:
        if self._closed:
            return 0
        index = self._bucket(key)
        return sum(self._buckets[row][index] for row in self._live_rows())

    def recent(self, key: str, now: float) -> float:
        """Admissions of ``key`` in the last minute, over every process: this minute's
        plus the previous minute's weighted by the part of it still inside the window."""
        index = self._bucket(key)
        window = int(now // WINDOW_SECONDS)
        elapsed = (now % WINDOW_SECONDS) / WINDOW_SECONDS
        current = previous = 0
        for row in self._live_rows():
            buckets = self._buckets[row]
            seen = buckets[index + 1]
            if seen == window:
                current += buckets[index + 2]
                previous += buckets[index + 3]
            elif seen == window - 1:
                previous += buckets[index + 2]
        return current + previous * (1.0 - elapsed)

    def add(self, key: str, now: float, *, rated: bool) -> None:
        if self._closed:
            return
        index = self._bucket(key)
        own = self._own
        own[index] += 1
        self._own_head[2] += 1
        if rated:
            window = int(now // WINDOW_SECONDS)
            if own[index + 1] != window:
                own[index + 3] = own[index + 2] if own[index + 1] == window - 1 else 0
                own[index + 2] = 0
                own[index + 1] = window
            own[index + 2] += 1

    def remove(self, key: str) -> None:
        if self._closed:
            return
        index = self._bucket(key)
        if self._own[index] > 0:
            self._own[index] -= 1
        if self._own_head[2] > 0:
            self._own_head[2] -= 1
