"""The outbound queue worker (issue 4; DESIGN step 4; concurrency: issue 20).  (Over 300
lines: the loop, the claims, the recording and crash recovery of claims read as one.)

Claims (a lease, so a crashed worker's jobs come back) bring due jobs into this worker's
*active* set — at most ``outbound.active_job_limit`` of them, the back-pressure that bounds
what one worker holds — choosing from a window of due jobs only what a lane can take
(:mod:`~mailplane.outbound.scheduling`): hosted jobs are claimed behind any remote
backlog, and no worker hoards what it cannot soon run.  Each job runs as its own task,
its parts at once in the two lanes (:mod:`~mailplane.outbound.lanes`): hosted recipients
locally, remote ones by destination within the global and per-destination limits, each
attempt within its time budget, dead destinations deferred without an attempt.

A job's outcome is recorded per recipient once all its parts are done
(:mod:`~mailplane.outbound.outcomes`: sent, retried with backoff, or failed with one DSN),
several jobs per transaction.  Claims stay correct across processes and nodes: the claim
is ``FOR UPDATE SKIP LOCKED`` / SQLite's single writer, every outcome is fenced by the
claim, and a job that waited for a slot renews its lease before it is tried (a lease lost
meanwhile means another worker has it: this one does not send it).

All blocking work (DB, spool files) runs in threads; every task is kept and awaited.
:meth:`OutboundWorker.stop` claims nothing more, hands back jobs not started, gives
attempts in flight ``stop_grace_seconds`` to finish, cuts the rest (due again at once)
and records every outcome before it returns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import dns.asyncresolver
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.mail.srs import Srs, srs_from_settings
from mailplane.mailstore.spool import (
    sweep_orphan_spool_files,
)
from mailplane.outbound.bounces import Bounces
from mailplane.outbound.lanes import Lanes, LeaseLost
from mailplane.outbound.local_transport import LocalTransport
from mailplane.outbound.mx_route import make_resolver
from mailplane.outbound.outcomes import Delivered, record
from mailplane.outbound.remote import RemoteDelivery
from mailplane.outbound.scheduling import LOCAL, REMOTE, Plan, choose, hold_limit, plan_of
from mailplane.signing.outbound import OutboundSigner
from mailplane.storage import outbound_repo
from mailplane.storage.outbound_repo import ClaimedJob

log = logging.getLogger(__name__)

#: Outcomes recorded per transaction (see :meth:`OutboundWorker._record_loop`).
RECORD_GROUP = 8
DEFAULT_LEASE = timedelta(minutes=15)
SWEEP_INTERVAL_SECONDS = 600.0
#: A job renews its claim before an attempt unless the lease outlasts the attempt's
#: budget by this much.
LEASE_MARGIN = timedelta(seconds=60)
#: Tries (one second apart) to record a group of outcomes while the database is away.
RECORD_TRIES = 5
#: Due jobs read per page when choosing what to claim, and pages read at most per pass
#: (a backlog for busy destinations is looked past, up to this far).
PEEK_WINDOW = 100
PEEK_PAGES = 5


#: How often a worker looks for claims of workers of this host that died (their jobs
#: would otherwise wait out the lease).
DEAD_CLAIMS_INTERVAL_SECONDS = 30.0


@dataclass
class _Active:
    """This worker's claimed jobs: their lease ends, and the tasks running them."""

    leases: dict[str, datetime] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    #: Parts each lane (:data:`LOCAL`) or destination holds, running or waiting.
    held: Counter[str] = field(default_factory=Counter)
    #: What left a due job unclaimed at the last claim (woken when it has room again).
    blocked: set[str] = field(default_factory=set)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs.  A zombie does not: a worker process orphaned by a crashed
    node stays one until init reaps it, and signal 0 still reaches it meanwhile."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")



class OutboundWorker:
    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        clock: Clock,
        *,
        worker_id: str,
        resolver: dns.asyncresolver.Resolver | None = None,
        dns_nameserver: tuple[str, int] | None = None,
        smtp_port_override: int | None = None,
        lease: timedelta = DEFAULT_LEASE,
        batch_size: int = 20,
        poll_seconds: float | None = None,
        local: LocalTransport | None = None,
        srs: Srs | None = None,
        signer: OutboundSigner | None = None,
    ) -> None:
        """``dns_nameserver``, ``smtp_port_override`` and ``poll_seconds`` default to
        ``[outbound] dns_nameserver``, ``mx_port`` and ``poll_seconds``: a node started as a
        separate process (the two-node test) is pointed at a DNS stub and capture MX that
        way; in-process tests pass them directly.  ``local`` delivers hosted recipients
        (the node always gives it; without it every recipient takes the MX/smarthost
        path); ``srs`` reverses an SRS sender for its DSN (default: the local transport's,
        else the node's from the settings); ``signer`` DKIM-signs what leaves the
        platform (default: from ``[dkim]`` and the selectors in the database)."""
        self.settings = settings
        self.signer = signer or OutboundSigner(settings, session_factory)
        out = settings.outbound
        self.local = local
        self.bounces = Bounces(settings, srs or (
            local.delivery.srs if local is not None else srs_from_settings(settings, clock)))
        self.session_factory = session_factory
        self.clock = clock
        self.worker_id = worker_id
        nameserver = dns_nameserver or out.nameserver()
        self.resolver = resolver or make_resolver(nameserver, timeout=out.dns_timeout_seconds)
        self.mx_port = smtp_port_override or out.mx_port
        self.lanes = Lanes(out, clock, local=local, remote=RemoteDelivery(
            out, local_hostname=settings.mx.hostname, resolver=self.resolver,
            mx_port=self.mx_port), signer=self.signer, keep_claim=self._keep_claim,
            part_ended=self._unhold)
        self.lease = lease
        self.batch_size = batch_size
        self.poll_seconds = out.poll_seconds if poll_seconds is None else poll_seconds
        self._active = _Active()
        self._outcomes: list[Delivered] = []
        self._outcome_ready = asyncio.Event()
        self._finishing = False
        self._full = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._stopped = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------

    def wake(self) -> None:
        """Nudge the worker (thread-safe): a job was just committed."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    @property
    def active_jobs(self) -> int:
        """Jobs claimed by this worker and not recorded yet (running or waiting)."""
        return len(self._active.tasks)

    async def run(self) -> None:
        """Claim due jobs whenever the active set has room, start each as its own task,
        record outcomes as they come (:meth:`_record_loop`)."""
        self._loop = asyncio.get_running_loop()
        recorder = asyncio.create_task(self._record_loop(), name="outbound-recorder")
        last_sweep = last_dead_check = 0.0
        woken = True  # the first pass looks at the queue at once
        try:
            while not self._stopping:
                if time.monotonic() - last_dead_check > DEAD_CLAIMS_INTERVAL_SECONDS:
                    # At start and then now and again: a worker that died after this one
                    # started (a crashed node's orphaned process) leaves claims too.
                    last_dead_check = time.monotonic()
                    try:
                        await asyncio.to_thread(self._release_dead_local_claims)
                    except Exception:
                        log.exception("outbound worker: could not release claims of dead "
                                      "workers")
                room = self.settings.outbound.active_job_limit - self.active_jobs
                self._full = room <= 0
                wanted = min(self.batch_size, max(room, 0))
                handled = 0
                try:
                    # A poll that nothing woke reads first (no write lock, no fsync) and
                    # claims only when a job is due: a short poll costs next to nothing.
                    if wanted and (woken or await asyncio.to_thread(self._any_due)):
                        handled = self._start(await self._claim_for_lanes(wanted))
                except OperationalError as exc:
                    # The database is away: say so once per pass, without a traceback.
                    log.warning("outbound worker: database unavailable, retrying: %s",
                                str(exc).splitlines()[0])
                except Exception:
                    log.exception("outbound worker pass failed")
                if time.monotonic() - last_sweep > SWEEP_INTERVAL_SECONDS:
                    last_sweep = time.monotonic()
                    try:
                        await asyncio.to_thread(self._sweep)
                    except Exception:
                        log.exception("outbound spool sweep failed")
                woken = bool(wanted) and handled >= wanted  # more may be due: go on at once
                if not woken and not self._stopping:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                        woken = True
                    except TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            await self._finish(recorder)
            self._stopped.set()

    async def stop(self) -> None:
        """Claim nothing more, finish or hand back what is active, and return once
        ``run`` ends (at most about ``stop_grace_seconds`` for attempts in flight)."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await self._stopped.wait()

    async def _finish(self, recorder: asyncio.Task[None]) -> None:
        """Turn away parts waiting for a slot (their jobs are handed back), let attempts
        in flight run for the grace period, then record every outcome."""
        self._stopping = True
        self.lanes.close(self.settings.outbound.stop_grace_seconds)
        running = list(self._active.tasks.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        self._finishing = True
        self._outcome_ready.set()
        await recorder

    # --- claims -------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim one batch of due jobs, deliver them all (at once, within the lanes'
        limits), record their outcomes; return how many were claimed.  Tests and
        ``drain`` helpers use it; :meth:`run` keeps claiming while jobs are in flight."""
        now = self.clock.now()
        jobs = await asyncio.to_thread(self._claim, self.batch_size, now)
        self._leased(jobs, now)
        try:
            if self._stopping:
                await asyncio.to_thread(self._release, jobs)
                return len(jobs)
            delivered = await asyncio.gather(*(self._process(job, self._hold(self._plan(job)))
                                               for job in jobs))
            done = [outcome for outcome in delivered if outcome is not None]
            for start in range(0, len(done), RECORD_GROUP):
                await asyncio.to_thread(self._record, done[start:start + RECORD_GROUP])
        finally:
            for job in jobs:
                self._active.leases.pop(job.id, None)
        return len(jobs)

    async def _claim_for_lanes(self, limit: int) -> list[ClaimedJob]:
        """Claim up to ``limit`` due jobs that a lane can take now (:func:`choose`)."""
        held, dead, now = (Counter(self._active.held), self.lanes.dead.now_dead(),
                           self.clock.now())
        jobs, blocked = await asyncio.to_thread(self._peek_and_claim, limit, held, dead, now)
        self._active.blocked |= blocked
        self._leased(jobs, now)
        return jobs

    def _leased(self, jobs: list[ClaimedJob], now: datetime) -> None:
        """Remember until when each job claimed at ``now`` is ours."""
        for job in jobs:
            self._active.leases[job.id] = now + self.lease

    def _peek_and_claim(self, limit: int, held: Counter[str], dead: set[str],
                        now: datetime) -> tuple[list[ClaimedJob], set[str]]:
        chosen: list[str] = []
        blocked: set[str] = set()
        with self.session_factory() as session:
            for page in range(PEEK_PAGES):
                peeked = outbound_repo.peek_due_jobs(session, now=now, limit=PEEK_WINDOW,
                                                     offset=page * PEEK_WINDOW)
                more, stuck = choose(peeked, held=held, dead=dead,
                                     limit=limit - len(chosen), is_local=self._is_local,
                                     out=self.settings.outbound)
                chosen += more
                blocked |= stuck
                if len(peeked) < PEEK_WINDOW or len(chosen) >= limit:
                    break
            session.rollback()  # end the read before the claim's write transaction
            jobs = outbound_repo.claim_jobs(session, job_ids=chosen, worker_id=self.worker_id,
                                            now=now, lease=self.lease)
            session.commit()
        return jobs, blocked

    def _is_local(self, recipient: str) -> bool:
        return self.local is not None and self.local.is_local(recipient)

    def _plan(self, job: ClaimedJob) -> Plan:
        return plan_of(job.recipients, is_local=self._is_local, out=self.settings.outbound)

    def _hold(self, plan: Plan) -> Plan:
        for key in plan.keys:
            self._active.held[key] += 1
        return plan

    def _unhold(self, key: str) -> None:
        """A part ended: its lane or destination has room again — wake the claimer if
        that room was wanted (once half the hold is free, not for every part)."""
        held = self._active.held
        held[key] -= 1
        if held[key] <= 0:
            del held[key]
        blocked = self._active.blocked
        if not blocked:
            return
        out = self.settings.outbound
        remote_held = sum(n for k, n in held.items() if k != LOCAL)
        if ((key in blocked and held[key] <= hold_limit(key, out))
                or (REMOTE in blocked and key != LOCAL
                    and remote_held <= hold_limit(REMOTE, out))):
            blocked.clear()
            self._wake.set()

    def _start(self, jobs: list[ClaimedJob]) -> int:
        for job in jobs:
            plan = self._hold(self._plan(job))
            self._active.tasks[job.id] = asyncio.create_task(
                self._run_job(job, plan), name=f"outbound-job-{job.id[:12]}")
        return len(jobs)

    async def _run_job(self, job: ClaimedJob, plan: Plan) -> None:
        try:
            outcome = await self._process(job, plan)
        except Exception:  # _process answers for its own failures; this is a last guard
            log.exception("outbound job %s: processing crashed", job.id)
            outcome = None
        if outcome is None:
            self._forget(job.id)
        else:
            self._outcomes.append(outcome)
            self._outcome_ready.set()

    def _forget(self, job_id: str) -> None:
        self._active.tasks.pop(job_id, None)
        self._active.leases.pop(job_id, None)
        if self._full:  # the claimer waits for room: there is some now
            self._full = False
            self._wake.set()

    async def _record_loop(self) -> None:
        """Record outcomes :data:`RECORD_GROUP` jobs per transaction: while one group is
        written, the next gathers (group commit, as the delivery writer does).  A job
        leaves the active set once its outcome is written."""
        while True:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            while self._outcomes:
                group = self._outcomes[:RECORD_GROUP]
                del self._outcomes[:RECORD_GROUP]
                await self._record_with_retries(group)
                for outcome in group:
                    self._forget(outcome.job.id)
            if self._finishing and not self._outcomes:
                return

    async def _record_with_retries(self, group: list[Delivered]) -> None:
        for attempt in range(RECORD_TRIES):
            try:
                await asyncio.to_thread(self._record, group)
                return
            except OperationalError as exc:
                log.warning("outbound worker: database unavailable, outcomes not recorded "
                            "yet: %s", str(exc).splitlines()[0])
            except Exception:
                log.exception("outbound worker: recording outcomes failed")
                break
            if attempt + 1 < RECORD_TRIES:
                await asyncio.sleep(1.0)
        # Still claimed in the database: the lease runs out and the jobs are sent again
        # (at least once, RFC 5321 §6.1); nothing is lost.
        log.error("outbound worker: %d outcome(s) left unrecorded", len(group))

    def _any_due(self) -> bool:
        with self.session_factory() as session:
            return outbound_repo.due_job_exists(session, now=self.clock.now())

    def _claim(self, limit: int, now: datetime) -> list[ClaimedJob]:
        with self.session_factory() as session:
            jobs = outbound_repo.claim_due_jobs(
                session, worker_id=self.worker_id, now=now, lease=self.lease, limit=limit,
            )
            session.commit()
        return jobs

    def _release(self, jobs: list[ClaimedJob]) -> None:
        with self.session_factory() as session:
            for job in jobs:
                outbound_repo.release_claim(session, job_id=job.id, worker_id=self.worker_id)
            session.commit()

    def _extend(self, job_id: str, until: datetime) -> bool:
        with self.session_factory() as session:
            kept = outbound_repo.extend_claim(session, job_id=job_id,
                                              worker_id=self.worker_id, until=until)
            session.commit()
        return kept

    async def _keep_claim(self, job: ClaimedJob) -> None:
        """Before an attempt: the lease must outlast it, or be renewed (a job may wait
        long for a slot); :class:`_LeaseLost` when another worker took it meanwhile."""
        now = self.clock.now()
        budget = timedelta(seconds=self.settings.outbound.attempt_budget_seconds)
        until = self._active.leases.get(job.id)
        if until is not None and until >= now + budget + LEASE_MARGIN:
            return
        renewed = now + max(self.lease, budget + LEASE_MARGIN)
        if not await asyncio.to_thread(self._extend, job.id, renewed):
            raise LeaseLost(job.id)
        self._active.leases[job.id] = renewed

    def _release_dead_local_claims(self) -> None:
        """After a crash (``kill -9``, power loss) this host's previous worker left its
        claims behind; waiting out the lease would hold accepted mail back for
        ``lease`` minutes.  Worker ids are ``host:pid``: a claim held by a pid of this host
        that no longer runs is handed back now.  A pid reused by an unrelated process only
        means the lease is waited out, as before."""
        host, sep, _pid = self.worker_id.rpartition(":")
        if not sep:
            return
        with self.session_factory() as session:
            for holder in outbound_repo.claim_holders(session, prefix=f"{host}:"):
                pid = holder.rpartition(":")[2]
                if holder == self.worker_id or not pid.isdigit() or _pid_alive(int(pid)):
                    continue
                released = outbound_repo.release_claims_of(session, worker_id=holder)
                log.warning("outbound worker: took back %d job(s) of dead worker %s",
                            released, holder)
            session.commit()

    def _sweep(self) -> None:
        with self.session_factory() as session:
            sweep_orphan_spool_files(session, spool_dir=self.settings.spool_dir)

    # --- one job ------------------------------------------------------------------------

    async def _process(self, job: ClaimedJob, plan: Plan) -> Delivered | None:
        """Deliver one job, its parts at once (:class:`~mailplane.outbound.lanes.Lanes`);
        its outcome is recorded by the caller (None: nothing to record — handed back,
        failed here, or no longer ours).  Each part gives back its hold when it ends."""
        try:
            message = (job.message if job.message is not None
                       else await asyncio.to_thread(Path(job.spool_path).read_bytes))
        except BaseException as exc:
            for key in plan.keys:
                self._unhold(key)
            if not isinstance(exc, FileNotFoundError):
                raise
            log.error("outbound job %s: spool file %s is missing", job.id, job.spool_path)
            await asyncio.to_thread(self._fail_missing, job)
            return None
        try:
            parts = await self.lanes.run(job, plan, message)
        except LeaseLost:
            log.warning("outbound job %s: lease lost while waiting for a slot; another "
                        "worker has it", job.id)
            return None
        if all(part.kind == "untouched" for part in parts):
            await asyncio.to_thread(self._release, [job])  # stopping: nothing was tried
            return None
        return Delivered(job, message, [r for part in parts for r in part.results],
                         retry_at=self.lanes.retry_at(job, parts))

    def _fail_missing(self, job: ClaimedJob) -> None:
        with self.session_factory() as session:
            outbound_repo.mark_failed(
                session, job_id=job.id, worker_id=self.worker_id, error="spool file missing"
            )
            session.commit()

    def _record(self, delivered: list[Delivered]) -> None:
        if record(delivered, session_factory=self.session_factory, bounces=self.bounces,
                  worker_id=self.worker_id, now=self.clock.now(), out=self.settings.outbound):
            self.wake()  # a DSN is due now (a hosted sender gets it at once)
