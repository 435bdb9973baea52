"""Housekeeping of the node's first process (issue 15): what a crash or an attack leaves
behind, removed at start and then every ``retention.purge_interval_seconds``.

- 迷惑メール copies whose index row committed before a kill -9 stopped their rename into
  ``new/``: published where the row points (:func:`~mailplane.delivery.quarantine.
  finish_interrupted`), before the sweep below could take them.
- Maildir ``tmp/`` files older than 36 hours (maildir(5)): a delivery killed between its
  write and its rename (kill -9) leaves one; nothing else ever removes it.
- Login failure counters that no longer matter (``login_failures`` grew by one row per
  guessed user name, for ever).
- Hourly quota counters older than the previous hour.
- Records of SRS addresses emitted (``srs_forwards``) past their expiry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.auth.login_guard import purge_login_counters
from mailplane.auth.send_quota import purge_counters
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.quarantine import finish_interrupted
from mailplane.mailstore.maildir import remove_tmp_orphans
from mailplane.storage import srs_forward_repo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HousekeepingResult:
    tmp_orphans: int
    login_counters: int
    quota_counters: int
    srs_records: int = 0
    quarantine_finished: int = 0


def housekeeping(settings: Settings, session_factory: sessionmaker[Session],
                 clock: Clock) -> HousekeepingResult:
    """One round (blocking: the periodic job runs it in a thread)."""
    finished = finish_interrupted(settings, session_factory, now=time.time())
    orphans = remove_tmp_orphans(settings.maildir_root, now=time.time())
    if orphans:
        metrics.MAILDIR_ORPHANS_REMOVED.inc(orphans)
        log.warning("removed %d orphan file(s) older than 36 h from Maildir tmp/", orphans)
    result = HousekeepingResult(
        tmp_orphans=orphans,
        login_counters=purge_login_counters(settings, session_factory, clock),
        quota_counters=purge_counters(session_factory, clock),
        srs_records=_purge_srs_records(session_factory, clock),
        quarantine_finished=finished,
    )
    log.info("housekeeping: %s", result)
    return result


def _purge_srs_records(session_factory: sessionmaker[Session], clock: Clock) -> int:
    with session_factory() as session, session.begin():
        return srs_forward_repo.purge_expired(session, now=clock.now())
