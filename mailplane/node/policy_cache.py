"""The node's policy cache: the current :class:`PolicySnapshot`, kept fresh.

RCPT-time and DATA-time decisions are pure dict hits on an immutable snapshot.  The API
bumps ``policy_revision`` in the same transaction as every settings write and logs which
address (or contract) it touched; :class:`PolicyCache` polls the revision, lets
:func:`~mailplane.storage.policy_loader.refresh_snapshot` reload only what changed and swaps
in the fresh snapshot atomically, so a change made on any node takes effect within seconds
everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.policy.model import PolicySnapshot
from mailplane.storage.policy_loader import load_snapshot, read_revision, refresh_snapshot

log = logging.getLogger(__name__)


class PolicyCache:
    """Holds the current snapshot; :meth:`run` polls the revision in a thread."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        base_domains: tuple[str, ...],
        refresh_seconds: float,
        clock: Clock,
    ) -> None:
        self._session_factory = session_factory
        self._base_domains = base_domains
        self._refresh_seconds = refresh_seconds
        self.clock = clock
        self._snapshot = PolicySnapshot(0, {}, {}, frozenset(), base_domains)
        self._loaded = False
        self._reload_requested = asyncio.Event()

    @property
    def snapshot(self) -> PolicySnapshot:
        return self._snapshot

    def load_now(self) -> PolicySnapshot:
        """Blocking full load; call from a thread (or at start-up before serving)."""
        with self._session_factory() as session:
            snapshot = load_snapshot(session, self._base_domains)
        self._snapshot = snapshot
        self._loaded = True
        # The snapshot lives until the next full load: move it (and everything else alive
        # now) out of the collector's generations, so each full collection no longer walks
        # every policy (0.1-0.3 s pauses at 10,000 addresses, docs/performance.md).  Dying
        # objects are still freed by reference counting; collect first so no garbage that
        # only the collector could free is kept.
        gc.collect()
        gc.freeze()
        log.info("policy cache loaded: revision %d, %d addresses",
                 snapshot.revision, len(snapshot.by_address))
        return snapshot

    def _revision_now(self) -> int:
        with self._session_factory() as session:
            return read_revision(session)

    def request_reload(self) -> None:
        """SIGHUP handler: reload at once regardless of the revision."""
        self._reload_requested.set()

    def _refresh_now(self) -> None:
        """Blocking: patch the snapshot with what changed since its revision."""
        current = self._snapshot
        with self._session_factory() as session:
            snapshot = refresh_snapshot(session, current)
        self._snapshot = snapshot
        log.info("policy cache refreshed: revision %d → %d, %d addresses",
                 current.revision, snapshot.revision, len(snapshot.by_address))

    async def refresh_if_changed(self) -> bool:
        revision = await asyncio.to_thread(self._revision_now)
        if self._loaded and revision == self._snapshot.revision:
            return False
        await asyncio.to_thread(self._refresh_now if self._loaded else self.load_now)
        return True

    async def run(self) -> None:
        """Poll forever; a database outage is logged and retried, never fatal."""
        while True:
            try:
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    await asyncio.to_thread(self.load_now)
                else:
                    await self.refresh_if_changed()
            except Exception as exc:  # keep serving the last good snapshot
                log.warning("policy refresh failed, keeping revision %d: %s",
                            self._snapshot.revision, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload_requested.wait(), self._refresh_seconds)
