"""Group commit for directory fsyncs (DESIGN "Keeping the SMTP path fast": fsync the Maildir
directory once for a batch of concurrent deliveries).

A rename into ``new/`` is durable only once the directory is fsynced (maildir(5); SPEC §8:
no 250 before that).  When several delivery threads renamed into the same directory at
about the same time, one ``fsync`` issued *after* all their renames covers all of them.

:meth:`DirFsyncBatcher.fsync_dir` is called after the caller's rename.  Each call takes a
ticket; a thread that finds no fsync of that directory running becomes the leader, notes
the newest ticket and fsyncs — every ticket up to the noted one was taken after its
rename, so that fsync covers it.  Callers whose ticket was not covered wait for the next
round (whose leader may be one of them).  Nobody returns before an fsync that started
after their own rename has succeeded; if a leader's fsync fails it raises to its own caller
and the waiters elect a new leader and try again themselves, so an error is never
swallowed and a success is never assumed.
"""

from __future__ import annotations

import threading
from pathlib import Path

from mailplane.mailstore.maildir import fsync_dir


class _DirState:
    __slots__ = ("cond", "covered", "running", "tickets")

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.tickets = 0  # tickets handed out (one per call)
        self.covered = 0  # every ticket <= covered is durable
        self.running = False


class DirFsyncBatcher:
    """Thread-safe; one per process is enough (see :data:`BATCHER`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirs: dict[Path, _DirState] = {}
        self.fsyncs = 0  # fsync(2) calls issued (for tests and the benchmark)
        self.requests = 0

    def fsync_dir(self, path: Path) -> None:
        """Return once an fsync of ``path`` that started after this call has succeeded."""
        with self._lock:
            state = self._dirs.get(path)
            if state is None:
                state = self._dirs[path] = _DirState(self._lock)
            state.tickets += 1
            self.requests += 1
            ticket = state.tickets
            while state.covered < ticket:
                if state.running:
                    state.cond.wait()
                    continue
                state.running = True
                target = state.tickets
                self._lock.release()
                try:
                    fsync_dir(path)
                    ok = True
                except BaseException:
                    ok = False
                    raise
                finally:
                    self._lock.acquire()
                    state.running = False
                    if ok:
                        state.covered = max(state.covered, target)
                        self.fsyncs += 1
                    state.cond.notify_all()
                    if state.covered >= state.tickets and not state.running:
                        # Idle: forget it so the table does not grow with every mailbox.
                        self._dirs.pop(path, None)


#: The process-wide batcher, for spool files written outside the delivery writer (the
#: outbound worker's DSNs: ``outbound.queue.write_spool_file``).
BATCHER = DirFsyncBatcher()
