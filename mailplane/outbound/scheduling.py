"""Which due jobs a worker claims: what its lanes can take now (issue 20).

A worker does not claim the oldest due jobs blindly: it reads a window of them (a plain
read, :func:`~mailplane.storage.outbound_repo.peek_due_jobs`), splits each into its parts
— hosted recipients for the local lane, remote recipients by destination — and claims by
id only the jobs some lane can take (:func:`choose`).  Each lane and destination may
*hold* (run, or have waiting) up to :data:`HOLD_FACTOR` times its concurrency limit.  So:

- a hosted job is claimed whenever the local lane has room, however many remote jobs
  ahead of it wait for a busy destination (Postfix's local transports have their own
  processes; here they have their own claim room too);
- a worker claims no more for a destination than it can soon run, and leaves the rest
  due for the other workers and nodes sharing the queue (no hoarding);
- a job whose destination is dead is claimed at once — it is deferred without an
  attempt, which moves it out of the due window.

A job with hosted and remote recipients is claimed when the local lane has room (its
hosted recipients are not kept waiting); its remote parts then wait for their slots.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailplane.config.sections import OutboundConfig
from mailplane.outbound.remote import destinations

#: The local lane's key in the hold counts (no destination is named so: they are
#: lower-case domains or the smarthost).
LOCAL = "[local]"
#: The key of the remote lane as a whole in the set of what blocked a claim.
REMOTE = "[remote]"
#: A lane or destination holds up to this many times its concurrency limit: one round
#: running, one waiting ready (Postfix's qmgr feeds its delivery agents the same way).
HOLD_FACTOR = 2


@dataclass(frozen=True, slots=True)
class Plan:
    """A job's parts: hosted recipients, and remote ones by destination."""

    hosted: list[str]
    remote: dict[str, list[str]]

    @property
    def keys(self) -> list[str]:
        return ([LOCAL] if self.hosted else []) + list(self.remote)


def plan_of(recipients: Iterable[str], *, is_local: Callable[[str], bool],
            out: OutboundConfig) -> Plan:
    recipients = list(recipients)
    hosted = [r for r in recipients if is_local(r)]
    return Plan(hosted, destinations([r for r in recipients if r not in hosted], out))


def hold_limit(key: str, out: OutboundConfig) -> int:
    """How many parts ``key`` (a lane or destination) runs at once."""
    if key == LOCAL:
        return out.local_concurrency_limit
    if key == REMOTE:
        return out.concurrency_limit
    return min(out.destination_concurrency_limit, out.concurrency_limit)


def choose(peeked: Iterable[tuple[str, tuple[str, ...]]], *, held: Counter[str],
           dead: set[str], limit: int, is_local: Callable[[str], bool],
           out: OutboundConfig) -> tuple[list[str], set[str]]:
    """Ids of the jobs to claim, oldest first, at most ``limit``; and the lanes and
    destinations that had to leave some job unclaimed.  ``held`` (parts each key holds
    now) is updated with the chosen jobs' parts."""
    chosen: list[str] = []
    blocked: set[str] = set()
    remote_held = sum(n for key, n in held.items() if key != LOCAL)
    for job_id, recipients in peeked:
        if len(chosen) >= limit:
            break
        plan = plan_of(recipients, is_local=is_local, out=out)
        if plan.hosted:
            take = held[LOCAL] < HOLD_FACTOR * hold_limit(LOCAL, out)
            if not take:
                blocked.add(LOCAL)
        else:
            lane_room = remote_held < HOLD_FACTOR * hold_limit(REMOTE, out)
            take = not plan.remote or any(key in dead or (
                lane_room and held[key] < HOLD_FACTOR * hold_limit(key, out))
                for key in plan.remote)
            if not take:
                blocked.update(plan.remote if lane_room else (REMOTE,))
        if take:
            chosen.append(job_id)
            for key in plan.keys:
                held[key] += 1
            remote_held += len(plan.remote)
    return chosen, blocked
