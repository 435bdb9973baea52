"""DeliveryWriter: one thread per process persists every accepted message, in batches.

Why one thread (docs/performance.md): with a thread-pool hop per delivery, every file
syscall of every delivery released and re-took the GIL against the busy event loop and up
to five other pool threads — ~150 futex calls per message, most of the server's kernel
time.  Here the event loop hands each plan to one writer thread and awaits a future; the
writer takes everything that queued up meanwhile and runs :func:`~mailplane.delivery.store
.persist_batch` on it: one fsync per directory and one database transaction per batch
(group commit, DESIGN "Keeping the SMTP path fast"), made durable with one ``syncfs`` per
filesystem per step where ``mx.durability`` allows (:mod:`~mailplane.mailstore.durability`).
Each future is resolved only after its plan is durable, so no 250 ever goes out before
its data is on disk (SPEC §8).

The thread starts on first use and stops in :meth:`aclose` after draining what was
queued; a plan submitted after that starts it again, so a late delivery never hangs.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from mailplane.config.settings import Settings
from mailplane.delivery.plan import DeliveryPlan
from mailplane.delivery.store import PersistResult, persist_batch
from mailplane.mailstore.durability import Syncfs, use_syncfs
from mailplane.mailstore.owner import make_dirs

log = logging.getLogger(__name__)

#: Plans in one batch at most: bounds one transaction and the latency of its first plan.
MAX_BATCH = 64

class _Persist(Protocol):
    def __call__(self, settings: Settings, session_factory: sessionmaker[Session],
                 plans: list[tuple[DeliveryPlan, datetime]], *,
                 syncfs: Syncfs | None) -> list[PersistResult]: ...


@dataclass(slots=True)
class _Request:
    plan: DeliveryPlan
    now: datetime
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]


class DeliveryWriter:
    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        *,
        persist: _Persist = persist_batch,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._persist = persist
        self._max_batch = max_batch
        # Each thread has its own queue: a thread started after aclose() can never take
        # the stop mark meant for the one being closed.
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def persist(self, plan: DeliveryPlan, *, now: datetime) -> int:
        """Return the number of outbound jobs queued once ``plan`` is durable; raise its
        error (nothing of it left behind) otherwise."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        # If our caller is cancelled (the client hung up), the plan is still persisted and
        # its outcome is dropped here, not logged as "exception never retrieved".
        future.add_done_callback(_retrieve)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._run, args=(self._queue,),
                                                name="delivery-writer", daemon=True)
                self._thread.start()
            self._queue.put(_Request(plan, now, loop, future))
        return await asyncio.shield(future)

    async def aclose(self) -> None:
        """Persist what is queued, then stop the thread (awaited, not abandoned)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(None)
        await asyncio.to_thread(thread.join)

    def _run(self, requests: queue.SimpleQueue[_Request | None]) -> None:
        syncfs: Syncfs | None = None
        try:
            settings = self._settings
            roots = [settings.maildir_root, settings.spool_dir, settings.quarantine_root]
            make_dirs(settings.maildir_root)  # the mail owner's (mailstore/owner.py)
            for root in roots:
                root.mkdir(parents=True, exist_ok=True)
            if use_syncfs(settings.mx.durability, roots):
                syncfs = Syncfs(roots)
        except Exception as exc:  # never leave queued plans without a thread
            log.warning("syncfs durability unavailable (%s): using fsync", exc)
        try:
            self._loop(requests, syncfs)
        finally:
            if syncfs is not None:
                syncfs.close()

    def _loop(self, requests: queue.SimpleQueue[_Request | None],
              syncfs: Syncfs | None) -> None:
        while True:
            first = requests.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    more = requests.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._write(batch, syncfs)
            if stop:
                return

    def _write(self, batch: list[_Request], syncfs: Syncfs | None) -> None:
        try:
            results = self._persist(self._settings, self._session_factory,
                                    [(r.plan, r.now) for r in batch], syncfs=syncfs)
        except Exception as exc:  # persist_batch returns per-plan errors; this is a bug
            log.exception("delivery batch failed")
            results = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request, PersistResult]]] = {}
        for request, result in zip(batch, results, strict=True):
            by_loop.setdefault(request.loop, []).append((request, result))
        for loop, settled in by_loop.items():
            try:  # one wake-up of each loop for the whole batch
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                log.warning("delivery results for a closed event loop dropped")


def _settle(settled: list[tuple[_Request, PersistResult]]) -> None:
    for request, result in settled:
        if request.future.done():
            continue
        if isinstance(result, Exception):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)


def _retrieve(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()
