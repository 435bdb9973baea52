"""Replies this process already sent, so a repeat sender skips the ledger round trip.

The shared ledger (``auto_reply_ledger``) stays the authority: a claim it refuses is never
sent.  This cache only remembers reply times the ledger recorded — claims this process won, and
after a refused claim the time of the claim that won — so "replied less than 24 h ago"
read from it is always true in the database as well — skipping the upsert for such a
sender can only avoid work, never send a second reply or suppress a due one.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from mailplane.storage.auto_reply_ledger_repo import REPLY_WINDOW

MAX_ENTRIES = 100_000


class RecentReplies:
    def __init__(self, window: timedelta = REPLY_WINDOW) -> None:
        self._window = window
        self._replied: dict[tuple[str, str], datetime] = {}
        self._lock = threading.Lock()

    def replied_recently(self, address: str, sender: str, now: datetime) -> bool:
        with self._lock:
            at = self._replied.get((address.lower(), sender.lower()))
        return at is not None and now - at < self._window

    def remember(self, address: str, sender: str, at: datetime) -> None:
        with self._lock:
            if len(self._replied) >= MAX_ENTRIES:
                self._replied.clear()  # bounded memory; the ledger still decides
            self._replied[(address.lower(), sender.lower())] = at
