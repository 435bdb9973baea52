"""Periodic jobs of the mail node: retention purge, quarantine digests and housekeeping
(:mod:`mailplane.delivery.housekeeping`: Maildir tmp orphans, stale counters).

Each job runs its blocking function in a thread every N seconds; a failure is logged and
retried next round, never fatal.  The tasks are kept and awaited on shutdown (``aclose``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.housekeeping import housekeeping
from mailplane.delivery.quarantine import reconcile_addresses
from mailplane.delivery.retention import purge
from mailplane.notices.digest import send_quarantine_digests

log = logging.getLogger(__name__)


async def run_every(interval_seconds: float, name: str, job: Callable[[], object]) -> None:
    while True:
        try:
            await asyncio.to_thread(job)
        except Exception as exc:
            log.warning("periodic job %s failed, retrying next round: %s", name, exc)
        await asyncio.sleep(interval_seconds)


class BackgroundJobs:
    def __init__(self, tasks: list[asyncio.Task[None]]) -> None:
        self.tasks = tasks

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _digests(settings: Settings, session_factory: sessionmaker[Session],
             clock: Clock) -> int:
    """The digest lists what is still quarantined: the index first follows the 迷惑メール
    folders (an IMAP client may have moved items out, SPEC §9b)."""
    reconcile_addresses(settings, session_factory, clock, unnotified_only=True)
    return send_quarantine_digests(settings, session_factory, clock)


def start_background_jobs(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> BackgroundJobs:
    """Start the purge, digest and housekeeping loops on the running event loop; each runs
    once at once (so a crash's leftovers go at start), then every interval."""
    retention = settings.retention
    tasks = [
        asyncio.create_task(
            run_every(retention.purge_interval_seconds, "purge",
                      lambda: purge(settings, session_factory, clock)),
            name="mailplane-purge",
        ),
        asyncio.create_task(
            run_every(retention.notify_interval_seconds, "quarantine-digest",
                      lambda: _digests(settings, session_factory, clock)),
            name="mailplane-digest",
        ),
        asyncio.create_task(
            run_every(retention.purge_interval_seconds, "housekeeping",
                      lambda: housekeeping(settings, session_factory, clock)),
            name="mailplane-housekeeping",
        ),
    ]
    return BackgroundJobs(tasks)
