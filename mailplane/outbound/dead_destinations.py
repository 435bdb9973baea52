"""Destinations where no host answered, and until when their jobs wait (issue 20).

Postfix's queue manager declares a destination *dead* when deliveries to it fail at the
connection or handshake stage, and defers its queued mail without trying ("delivery
temporarily suspended") for ``minimal_backoff_time``; one successful delivery revives
it.  Here the same per worker: :meth:`DeadDestinations.mark` after an attempt that no
host answered (DNS timeout, no connection, no greeting, the attempt budget used up),
:meth:`until` for a job about to be tried, :meth:`revive` when mail got through.

Times come from the worker's :class:`~mailplane.clock.Clock`, like the jobs'
``next_attempt_at``: a deferred job is due again when its destination may be tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mailplane.clock import Clock

#: Entries kept before expired ones are swept out.
_PRUNE_AT = 1024


@dataclass(frozen=True, slots=True)
class Dead:
    until: datetime
    reason: str


class DeadDestinations:
    def __init__(self, clock: Clock, *, seconds: float) -> None:
        self.clock = clock
        self.period = timedelta(seconds=seconds)
        self._dead: dict[str, Dead] = {}

    def mark(self, destination: str, reason: str) -> Dead | None:
        """Declare ``destination`` dead from now; None when the throttle is off."""
        if not self.period:
            return None
        now = self.clock.now()
        if len(self._dead) >= _PRUNE_AT:  # bounded: many hostile domains, each forgotten
            self._dead = {key: d for key, d in self._dead.items() if d.until > now}
        dead = Dead(now + self.period, reason)
        self._dead[destination] = dead
        return dead

    def until(self, destination: str) -> Dead | None:
        """Whether ``destination`` is dead now (and until when); forgets expired ones."""
        dead = self._dead.get(destination)
        if dead is None:
            return None
        if self.clock.now() >= dead.until:
            del self._dead[destination]
            return None
        return dead

    def now_dead(self) -> set[str]:
        """The destinations dead at this moment (a copy, for a claim in a thread)."""
        now = self.clock.now()
        return {key for key, dead in self._dead.items() if dead.until > now}

    def revive(self, destination: str) -> None:
        self._dead.pop(destination, None)

    def __len__(self) -> int:
        return len(self._dead)
