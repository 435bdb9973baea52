"""argon2 work of the API, bounded (issue 15: "a cap on concurrent hash work").

argon2id is meant to be expensive: ~20 MB and tens of milliseconds per call at the default
cost.  The API hashes new POP passwords (registration, change, reissue), checks current
ones, and checks keys issued before migration 0005; without a cap, a burst of such calls
would take every core from the POP3 logins and deliveries of the same node.  At most
``api.max_concurrent_hashing`` run at once; the others wait up to
``api.queue_timeout_seconds`` (in their worker thread, inside their database turn, so at
most ``max_concurrent_requests`` threads wait) and then get 503 with ``Retry-After``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from mailplane.api.admission import RETRY_AFTER
from mailplane.api.errors import ApiError
from mailplane.auth.passwords import PasswordHashing
from mailplane.config.sections import SecurityConfig
from mailplane.metrics import API_REFUSALS

_T = TypeVar("_T")


class HashingBusy(ApiError):
    def __init__(self) -> None:
        super().__init__(503, "busy", "the service is busy; retry shortly",
                         headers={"Retry-After": RETRY_AFTER})


class BoundedHashing(PasswordHashing):
    """:class:`PasswordHashing` with at most ``max_concurrent`` calls running at once."""

    def __init__(self, security: SecurityConfig, *, max_concurrent: int,
                 wait_seconds: float) -> None:
        super().__init__(security)
        self._turns = threading.BoundedSemaphore(max_concurrent)
        self._wait_seconds = wait_seconds

    def hash(self, secret: str) -> str:
        return self._bounded(lambda: PasswordHashing.hash(self, secret))

    def verify(self, hashed: str, secret: str) -> bool:
        return self._bounded(lambda: PasswordHashing.verify(self, hashed, secret))

    def _bounded(self, work: Callable[[], _T]) -> _T:
        if not self._turns.acquire(timeout=self._wait_seconds):
            API_REFUSALS.labels("hashing_busy").inc()
            raise HashingBusy
        try:
            return work()
        finally:
            self._turns.release()
