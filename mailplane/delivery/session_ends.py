"""Open mail sessions end when what let them in stops being valid (SPEC §9b; 003
Art.20(3)): a password changed or reissued, an address or its contract suspended,
terminated or deleted (:data:`~mailplane.delivery.changes.ENDS_SESSIONS`).

Every login reads the credential at that moment, but a session that is already open —
an IMAP client in IDLE for hours, a phone — never logs in again.  A thief with a stolen
password would keep the mailbox open after the customer reissued it.  So each node that
holds sessions open (Dovecot's IMAP, :mod:`mailplane.anywhere.sessions`; mailplane's own
POP3) runs a :class:`SessionEnds` that reads those changes from the audit log — written in
the change's own transaction by :func:`mailplane.delivery.changes.record` on whichever
node made it — and ends the affected addresses' sessions.  Several nodes share one
database, so a change made through one node's API reaches the sessions every other node
holds, with no call between nodes and nothing lost while one of them restarts (a node
ends, with its own process, the sessions it held).

The log is read by its primary key from a floor close to its newest row.  Ids are handed
out before commit, so a row may become visible after a higher one was read: the floor
stays :data:`LOOKBACK_SECONDS` behind what was seen, and rows above it are read again
(each acted on once).  Each change is acted on twice, at once and again after
``again_after_seconds``: a login checked a moment before the change, whose session opens
a moment after the first pass, ends at the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailplane.delivery.changes import ENDS_SESSIONS
from mailplane.net.throttled_log import ThrottledLog
from mailplane.storage import addresses_repo, audit_repo

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: How long a change may take from its id to its commit and still be seen.  An API
#: request's transaction lasts well under a second; a minute leaves room for a stall.
LOOKBACK_SECONDS = 60.0

#: What ends the sessions of a set of addresses (lower-case, as mailplane stores them).
Ender = Callable[[frozenset[str]], Awaitable[None]]


class SessionEnds:
    """Reads the changes that end sessions and hands their addresses to each ender."""

    def __init__(self, session_factory: sessionmaker[Session], *, poll_seconds: float,
                 again_after_seconds: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._session_factory = session_factory
        self._poll_seconds = poll_seconds
        self._again_after = again_after_seconds
        self._monotonic = monotonic
        self._enders: list[tuple[str, Ender]] = []
        self._floor: int | None = None
        self._seen: set[int] = set()
        #: (when, the newest id then), oldest first: the floor follows them LOOKBACK late.
        self._tops: deque[tuple[float, int]] = deque()
        #: (when, addresses): the second pass of changes already acted on once.
        self._again: list[tuple[float, frozenset[str]]] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, name: str, ender: Ender) -> None:
        self._enders.append((name, ender))

    # --- reading ------------------------------------------------------------------

    def _read(self, floor: int | None) -> tuple[int, list[audit_repo.Logged], set[str]]:
        """Blocking: the newest id, the session-ending rows above ``floor`` and the
        addresses of the contracts among them."""
        with self._session_factory() as session:
            if floor is None:
                return audit_repo.latest_id(session), [], set()
            rows = audit_repo.logged_after(session, after_id=floor, actions=ENDS_SESSIONS)
            top = audit_repo.latest_id(session)
            contracts = {row.contract_id for row in rows
                         if row.id not in self._seen and row.address is None
                         and row.contract_id is not None}
            return top, rows, addresses_repo.addresses_of_contracts(
                session, contract_ids=contracts)

    async def check(self) -> frozenset[str]:
        """One pass: the addresses whose sessions end now (also handed to the enders)."""
        now = self._monotonic()
        top, rows, of_contracts = await asyncio.to_thread(self._read, self._floor)
        addresses: set[str] = set()
        if self._floor is None:
            self._floor = top  # sessions are this node's from now on
        for row in rows:
            if row.id in self._seen:
                continue
            self._seen.add(row.id)
            if row.address is not None:
                addresses.add(row.address.lower())
            log.info("%s: ending the open sessions of %s", row.action,
                     row.address or f"contract {row.contract_id}")
        addresses.update(address.lower() for address in of_contracts)
        self._advance(now, top)
        due = {address for when, batch in self._again if when <= now for address in batch}
        self._again = [(when, batch) for when, batch in self._again if when > now]
        if addresses:
            self._again.append((now + self._again_after, frozenset(addresses)))
        ending = frozenset(addresses | due)
        if ending:
            await self._hand_over(ending)
        return ending

    def _advance(self, now: float, top: int) -> None:
        self._tops.append((now, top))
        while self._tops and self._tops[0][0] <= now - LOOKBACK_SECONDS:
            _when, settled = self._tops.popleft()
            self._floor = max(self._floor or 0, settled)
        floor = self._floor or 0
        self._seen = {row_id for row_id in self._seen if row_id > floor}

    async def _hand_over(self, addresses: frozenset[str]) -> None:
        for name, ender in self._enders:
            try:
                await ender(addresses)
            except Exception as exc:  # one ender's failure never stops the others
                _throttled.error(("ender", name), "ending %s sessions failed: %s", name, exc,
                                 exc_info=exc)

    # --- running ------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except SQLAlchemyError as exc:
                _throttled.warning(("read",), "cannot read the changes that end sessions: "
                                   "%s", type(exc).__name__)
            await asyncio.sleep(self._poll_seconds)

    async def start(self) -> None:
        """The first pass (the floor: changes from now on), then the loop."""
        with contextlib.suppress(SQLAlchemyError):
            await self.check()
        self._task = asyncio.create_task(self.run(), name="session-ends")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
