"""Delivery slots: a global limit and a per-destination limit, with back-pressure (issue 20).

Postfix's queue manager keeps one queue per destination and runs at most
``default_destination_concurrency_limit`` deliveries to it, within the transport's
``default_process_limit``.  :class:`SlotPool` is that rule for one worker's event loop:
:meth:`SlotPool.acquire` waits until both the destination and the pool have room.

Waiters are served in arrival order, except that a waiter for a destination that is
full never holds back a waiter for another destination: a hostile domain's backlog waits
for its own slots only.  A destination found dead has its waiters turned away at once
(:meth:`abort_waiting`); :meth:`close` turns every waiter away (a stopping worker).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class SlotRefused(Exception):
    """The wait for a slot was ended: the destination is dead or the pool is closing."""


class SlotPool:
    def __init__(self, total: int, per_destination: int) -> None:
        if total < 1 or per_destination < 1:
            raise ValueError("slot limits must be at least 1")
        self.total = total
        self.per_destination = min(per_destination, total)
        self._busy: Counter[str] = Counter()
        self._waiters: deque[tuple[str, asyncio.Future[None]]] = deque()
        self._closed = False

    @property
    def in_use(self) -> int:
        return sum(self._busy.values())

    @property
    def waiting(self) -> int:
        return sum(1 for _key, future in self._waiters if not future.done())

    def busy(self, destination: str) -> int:
        return self._busy[destination]

    def _has_room(self, destination: str) -> bool:
        return (self.in_use < self.total
                and self._busy[destination] < self.per_destination)

    async def acquire(self, destination: str) -> None:
        """Take a slot for ``destination``, waiting for one; :class:`SlotRefused` if the
        wait is ended.  The caller must :meth:`release` what it took."""
        if self._closed:
            raise SlotRefused("the worker is stopping")
        if self._has_room(destination) and not any(
                key == destination or self._busy[key] < self.per_destination
                for key, future in self._waiters if not future.done()):
            self._busy[destination] += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((destination, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(destination)  # granted while we were being cancelled
            raise
        finally:
            self._forget(future)

    def release(self, destination: str) -> None:
        self._busy[destination] -= 1
        if self._busy[destination] <= 0:
            del self._busy[destination]
        self._grant()

    @asynccontextmanager
    async def slot(self, destination: str) -> AsyncIterator[None]:
        await self.acquire(destination)
        try:
            yield
        finally:
            self.release(destination)

    def abort_waiting(self, destination: str, reason: str) -> int:
        """Turn away every waiter for ``destination`` (found dead); return how many."""
        aborted = 0
        for key, future in self._waiters:
            if key == destination and not future.done():
                future.set_exception(SlotRefused(reason))
                aborted += 1
        return aborted

    def close(self) -> None:
        """Turn away every waiter, and every later :meth:`acquire`."""
        self._closed = True
        for _key, future in self._waiters:
            if not future.done():
                future.set_exception(SlotRefused("the worker is stopping"))

    def _grant(self) -> None:
        """Give freed slots to the oldest waiters whose destination has room."""
        for key, future in self._waiters:
            if self.in_use >= self.total:
                return
            if not future.done() and self._busy[key] < self.per_destination:
                self._busy[key] += 1
                future.set_result(None)

    def _forget(self, future: asyncio.Future[None]) -> None:
        for index, (_key, waiting) in enumerate(self._waiters):
            if waiting is future:
                del self._waiters[index]
                return
