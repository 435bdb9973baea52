"""The two lanes a claimed job's parts run in (issue 20; docs/architecture.md "Outbound").

- **local**: hosted recipients, through the node's
  :class:`~mailplane.outbound.local_transport.LocalTransport`, ``local_concurrency_limit``
  at a time — never behind a remote attempt;
- **remote**: recipients by destination (domain or smarthost), ``concurrency_limit``
  attempts in flight and ``destination_concurrency_limit`` per destination
  (:class:`~mailplane.outbound.slots.SlotPool`), each one attempt
  (:meth:`Lanes._remote_attempt`) within the attempt budget.  An attempt no host answered
  declares its destination dead (:mod:`~mailplane.outbound.dead_destinations`): the parts
  waiting for it, and later ones, are deferred without an attempt.

:meth:`Lanes.run` gives one :class:`Part` per lane or destination; :meth:`Lanes.retry_at`
says when the job's retried recipients are due; :meth:`Lanes.close` (a stopping worker)
turns waiters away and cuts attempts in flight after the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mailplane import metrics
from mailplane.clock import Clock
from mailplane.config.sections import OutboundConfig
from mailplane.net.throttled_log import ThrottledLog
from mailplane.outbound.dead_destinations import Dead, DeadDestinations
from mailplane.outbound.local_transport import LocalTransport
from mailplane.outbound.outcomes import backoff
from mailplane.outbound.remote import AttemptInterrupted, RemoteDelivery, no_host_answered
from mailplane.outbound.scheduling import LOCAL, Plan
from mailplane.outbound.slots import SlotPool, SlotRefused
from mailplane.outbound.smtp_transport import RecipientResult
from mailplane.signing.outbound import OutboundSigner, SigningUnavailable
from mailplane.storage.outbound_repo import ClaimedJob

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)


class LeaseLost(Exception):
    """Another worker holds the job now: this one must neither send nor record it."""


#: What became of one part of a job: ``done`` (tried), ``deferred`` (its destination is
#: dead: not tried), ``cut`` (tried, interrupted by stop), ``untouched`` (stop came first).
PartKind = Literal["done", "deferred", "cut", "untouched"]


@dataclass(frozen=True, slots=True)
class Part:
    results: list[RecipientResult]
    kind: PartKind = "done"
    not_before: datetime | None = None


class Lanes:
    def __init__(self, out: OutboundConfig, clock: Clock, *, local: LocalTransport | None,
                 remote: RemoteDelivery, signer: OutboundSigner | None = None,
                 keep_claim: Callable[[ClaimedJob], Awaitable[None]],
                 part_ended: Callable[[str], None]) -> None:
        """``signer`` DKIM-signs what leaves the platform (SPEC §8b; None: unsigned, for
        tests of the lanes alone); ``keep_claim`` runs before each remote attempt (it
        raises :class:`LeaseLost`); ``part_ended`` hears the lane or destination of every
        part that ends."""
        self.out = out
        self.clock = clock
        self.local = local
        self.remote = remote
        self.signer = signer
        self.keep_claim = keep_claim
        self.part_ended = part_ended
        self.remote_slots = SlotPool(out.concurrency_limit, out.destination_concurrency_limit)
        self.local_slots = SlotPool(out.local_concurrency_limit, out.local_concurrency_limit)
        self.dead = DeadDestinations(clock, seconds=out.dead_destination_seconds)
        self.stopping = False

    async def run(self, job: ClaimedJob, plan: Plan, message: bytes) -> list[Part]:
        """Every part of ``job`` at once; :class:`LeaseLost` if the job is no longer ours.
        A part that crashed is a retry (one job never stops the queue)."""
        groups: list[list[str]] = []
        parts = []
        if plan.hosted:
            groups.append(plan.hosted)
            parts.append(self._local_part(job, message, plan.hosted))
        for destination, recipients in plan.remote.items():
            groups.append(recipients)
            parts.append(self._remote_part(job, destination, recipients, message))
        answers = await asyncio.gather(*parts, return_exceptions=True)
        done: list[Part] = []
        for recipients, answer in zip(groups, answers, strict=True):
            if isinstance(answer, LeaseLost):
                raise answer
            if isinstance(answer, BaseException):
                log.error("outbound job %s: delivery crashed", job.id, exc_info=answer)
                answer = Part([RecipientResult(r, "retry", "4.3.0",
                                               f"internal error: {type(answer).__name__}")
                               for r in recipients])
            done.append(answer)
        return done

    def retry_at(self, job: ClaimedJob, parts: list[Part]) -> datetime | None:
        """Due again at once when only a stop held the job back; after the dead
        destination's deferral when only that did; else (None) after the usual backoff."""
        retrying = [p for p in parts if any(r.outcome == "retry" for r in p.results)]
        if not retrying:
            return None
        now = self.clock.now()
        if all(p.kind in ("cut", "untouched") for p in retrying):
            return now
        not_before = [p.not_before for p in retrying if p.kind == "deferred" and p.not_before]
        if len(not_before) == len(retrying):
            usual = now + backoff(job.attempts, max_seconds=self.out.max_backoff_seconds)
            return max(usual, *not_before)
        return None

    def close(self, grace: float) -> None:
        """Stopping: waiters are turned away, attempts in flight end within ``grace``."""
        self.stopping = True
        self.local_slots.close()
        self.remote_slots.close()
        self.remote.cut(grace)

    async def _local_part(self, job: ClaimedJob, message: bytes,
                          recipients: list[str]) -> Part:
        """Hosted recipients, in the local lane (the transport never raises)."""
        try:
            assert self.local is not None
            try:
                await self.local_slots.acquire(LOCAL)
            except SlotRefused:
                return _untouched(recipients)
            metrics.OUTBOUND_ACTIVE.labels("local").inc()
            try:
                return Part(await self.local.deliver(job, message, recipients))
            finally:
                metrics.OUTBOUND_ACTIVE.labels("local").dec()
                self.local_slots.release(LOCAL)
        finally:
            self.part_ended(LOCAL)

    async def _remote_part(self, job: ClaimedJob, destination: str, recipients: list[str],
                           message: bytes) -> Part:
        """Recipients at one remote destination: wait for a slot (unless the destination
        is dead), make one attempt, and learn from it whether the destination is dead."""
        try:
            return await self._remote_part_held(job, destination, recipients, message)
        finally:
            self.part_ended(destination)

    async def _remote_part_held(self, job: ClaimedJob, destination: str,
                                recipients: list[str], message: bytes) -> Part:
        dead = self.dead.until(destination)
        if dead is not None:
            return _deferred(recipients, dead)
        try:
            await self.remote_slots.acquire(destination)
        except SlotRefused:
            dead = self.dead.until(destination)
            return _untouched(recipients) if dead is None else _deferred(recipients, dead)
        try:
            dead = self.dead.until(destination)  # found dead while this part waited
            if dead is not None:
                return _deferred(recipients, dead)
            if self.stopping:
                return _untouched(recipients)
            await self.keep_claim(job)
            try:
                message = await self._signed(job, message)
            except SigningUnavailable as exc:  # this node's key: retry later, not dead
                return Part([RecipientResult(r, "retry", "4.3.5",
                                             f"DKIM signing unavailable: {exc}")
                             for r in recipients])
            metrics.OUTBOUND_ACTIVE.labels("remote").inc()
            try:
                results = await self._remote_attempt(job, destination, recipients, message)
            except AttemptInterrupted:
                metrics.OUTBOUND_DEFERRALS.labels("shutdown").inc()
                return Part([RecipientResult(r, "retry", "4.4.2",
                                              "delivery interrupted: the worker stopped")
                              for r in recipients], "cut")
            finally:
                metrics.OUTBOUND_ACTIVE.labels("remote").dec()
        finally:
            self.remote_slots.release(destination)
        if no_host_answered(results):
            self._declare_dead(destination, results[0].diagnostic)
        elif any(r.outcome == "sent" for r in results):
            self.dead.revive(destination)
        return Part(results)

    async def _signed(self, job: ClaimedJob, message: bytes) -> bytes:
        """The one place mail leaves the platform: our DKIM (and optional ARC) stamps go
        on here, in a thread (SPEC §8b, :mod:`mailplane.signing.outbound`)."""
        if self.signer is None:
            return message
        return await self.signer.sign(message, mail_from=job.mail_from, kind=job.kind)

    async def _remote_attempt(self, job: ClaimedJob, destination: str,
                              recipients: list[str], message: bytes) -> list[RecipientResult]:
        """The bytes of ``job`` that leave the platform for ``destination``: one attempt
        (:meth:`RemoteDelivery.attempt`, within the attempt budget).  Anything that must
        change what is sent is done before (:meth:`_signed`)."""
        return await self.remote.attempt(destination, mail_from=job.mail_from,
                                         recipients=recipients, message=message)

    def _declare_dead(self, destination: str, reason: str) -> None:
        was_dead = self.dead.until(destination) is not None
        dead = self.dead.mark(destination, reason)
        if dead is None:
            return
        turned_away = self.remote_slots.abort_waiting(destination, reason)
        if was_dead:  # another attempt in flight said so already: only the time moves
            return
        metrics.OUTBOUND_DEAD_DESTINATIONS.inc()
        # One line a minute at most, however many hostile domains (docs/security.md).
        _throttled.log(logging.WARNING, "dead-destination",
                       "outbound: destination %s is dead until %s (%s); %d waiting "
                       "delivery(ies) deferred", destination, dead.until.isoformat(),
                       reason, turned_away)


def _untouched(recipients: list[str]) -> Part:
    metrics.OUTBOUND_DEFERRALS.labels("shutdown").inc()
    return Part([RecipientResult(r, "retry", "4.3.0", "not tried: the worker stopped")
                  for r in recipients], "untouched")


def _deferred(recipients: list[str], dead: Dead) -> Part:
    metrics.OUTBOUND_DEFERRALS.labels("dead_destination").inc()
    text = f"delivery temporarily suspended: {dead.reason}"
    return Part([RecipientResult(r, "retry", "4.4.1", text) for r in recipients],
                 "deferred", dead.until)
