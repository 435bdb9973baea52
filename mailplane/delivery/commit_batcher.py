"""Group commit: concurrent deliveries share one database transaction.

Every delivery that quarantines, forwards or replies must commit its rows before its 250
(SPEC §8).  Committing each one alone makes every delivery pay a durable commit (a WAL
fsync on SQLite, a round trip and flush on PostgreSQL) and, on SQLite, wait in line for the
single write lock.  Here the first delivery to arrive commits for everyone who arrived
while the previous commit was running: one transaction, one durable commit, each caller
still returning only after *its* rows are committed.

If the shared transaction fails, each piece of work is retried alone, so one bad delivery
never makes its neighbours answer 451.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

#: Upper bound on deliveries in one transaction (keeps a failed batch's retry cheap).
MAX_BATCH = 64


@dataclass
class _Work(Generic[T]):
    fn: Callable[[Session], T]
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None
    error: BaseException | None = None


class CommitBatcher:
    """Thread-safe; one per session factory (each MX handler owns one)."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._session_factory = session_factory
        self._queue: list[_Work[object]] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a shared transaction; return once that transaction committed."""
        work: _Work[object] = _Work(fn)
        with self._queue_lock:
            self._queue.append(work)
        while not work.done.is_set():
            with self._commit_lock:
                if work.done.is_set():
                    break
                with self._queue_lock:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._commit(batch)
        if work.error is not None:
            raise work.error
        return work.result  # type: ignore[return-value]

    def _commit(self, batch: list[_Work[object]]) -> None:
        try:
            with self._session_factory() as session:
                results = [work.fn(session) for work in batch]
                session.commit()
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            for work in batch:  # one bad delivery must not fail the others
                self._finish_alone(work)
            return
        for work, result in zip(batch, results, strict=True):
            work.result = result
            work.done.set()

    def _finish_alone(self, work: _Work[object]) -> None:
        try:
            with self._session_factory() as session:
                work.result = work.fn(session)
                session.commit()
        except BaseException as exc:
            work.error = exc
        finally:
            work.done.set()
