"""The outbound queue worker (issue 4; DESIGN step 4).  (Over 300 lines: the loop, claims,
the three routes — local, smarthost, MX — and crash recovery of claims read as one.)

Each pass claims due jobs (a lease, so a crashed worker's jobs come back), reads the spool
file, delivers — recipients in a hosted domain through the local transport
(:mod:`~mailplane.outbound.local_transport`, never by DNS), the others to the smarthost if
one is configured, else to each recipient domain's MX hosts — and records the outcome per
recipient (:mod:`~mailplane.outbound.outcomes`: sent, retried with backoff, or failed
with one DSN to the envelope sender — for a forward, the original sender its SRS address
stands for — staged in the same transaction).

All blocking work (DB, spool files) runs in threads.  :meth:`OutboundWorker.stop` lets the
delivery in flight finish and hands the rest of the claimed batch back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from datetime import timedelta
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
from mailplane.outbound.local_transport import LocalTransport
from mailplane.outbound.mx_route import RouteError, host_addresses, make_resolver, mx_hosts
from mailplane.outbound.outcomes import Delivered, record
from mailplane.outbound.smtp_transport import (
    Candidate,
    Outcome,
    RecipientResult,
    TransportOptions,
    send_message,
)
from mailplane.signing.outbound import OutboundSigner, SigningUnavailable
from mailplane.storage import outbound_repo
from mailplane.storage.outbound_repo import ClaimedJob

log = logging.getLogger(__name__)

#: Outcomes recorded per transaction (see :meth:`OutboundWorker.run_once`).
RECORD_GROUP = 8
DEFAULT_LEASE = timedelta(minutes=15)
SWEEP_INTERVAL_SECONDS = 600.0


#: How often a worker looks for claims of workers of this host that died (their jobs
#: would otherwise wait out the lease).
DEAD_CLAIMS_INTERVAL_SECONDS = 30.0


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
        self.local = local
        self.bounces = Bounces(settings, srs or (
            local.delivery.srs if local is not None else srs_from_settings(settings, clock)))
        self.session_factory = session_factory
        self.clock = clock
        self.worker_id = worker_id
        timeout = settings.outbound.connect_timeout_seconds
        nameserver = dns_nameserver or settings.outbound.nameserver()
        self.resolver = resolver or make_resolver(nameserver, timeout=timeout)
        self.mx_port = smtp_port_override or settings.outbound.mx_port
        self.lease = lease
        self.batch_size = batch_size
        self.poll_seconds = (
            settings.outbound.poll_seconds if poll_seconds is None else poll_seconds
        )
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

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
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
                try:
                    # A poll that nothing woke reads first (no write lock, no fsync) and
                    # claims only when a job is due: a short poll costs next to nothing.
                    if woken or await asyncio.to_thread(self._any_due):
                        handled = await self.run_once()
                    else:
                        handled = 0
                except OperationalError as exc:
                    # The database is away: say so once per pass, without a traceback.
                    log.warning("outbound worker: database unavailable, retrying: %s",
                                str(exc).splitlines()[0])
                    handled = 0
                except Exception:
                    log.exception("outbound worker pass failed")
                    handled = 0
                if time.monotonic() - last_sweep > SWEEP_INTERVAL_SECONDS:
                    last_sweep = time.monotonic()
                    try:
                        await asyncio.to_thread(self._sweep)
                    except Exception:
                        log.exception("outbound spool sweep failed")
                woken = handled >= self.batch_size  # more may be due: go on at once
                if not woken and not self._stopping:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                        woken = True
                    except TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Finish the delivery in flight, give back the rest, and return once ``run`` ends."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await self._stopped.wait()

    # --- one pass -----------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim and process one batch of due jobs; return how many were claimed.

        Outcomes are recorded :data:`RECORD_GROUP` jobs at a time in one transaction (and
        the rest when the batch ends): a commit per job was a write lock and an fsync per
        forward, taken from the MX's own commits.  A crash before a group is recorded
        sends its jobs again — SMTP is at-least-once anyway (RFC 5321 §6.1)."""
        jobs = await asyncio.to_thread(self._claim)
        done: list[Delivered] = []
        try:
            for index, job in enumerate(jobs):
                if self._stopping:
                    await asyncio.to_thread(self._release, jobs[index:])
                    break
                outcome = await self._process(job)
                if outcome is not None:
                    done.append(outcome)
                if len(done) >= RECORD_GROUP:
                    await asyncio.to_thread(self._record, done)
                    done = []
        finally:
            if done:
                await asyncio.to_thread(self._record, done)
        return len(jobs)

    def _any_due(self) -> bool:
        with self.session_factory() as session:
            return outbound_repo.due_job_exists(session, now=self.clock.now())

    def _claim(self) -> list[ClaimedJob]:
        with self.session_factory() as session:
            jobs = outbound_repo.claim_due_jobs(
                session, worker_id=self.worker_id, now=self.clock.now(),
                lease=self.lease, limit=self.batch_size,
            )
            session.commit()
        return jobs

    def _release(self, jobs: list[ClaimedJob]) -> None:
        with self.session_factory() as session:
            for job in jobs:
                outbound_repo.release_claim(session, job_id=job.id, worker_id=self.worker_id)
            session.commit()

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

    async def _process(self, job: ClaimedJob) -> Delivered | None:
        """Deliver one job; its outcome is recorded by the caller (None: nothing to)."""
        try:
            message = (job.message if job.message is not None
                       else await asyncio.to_thread(Path(job.spool_path).read_bytes))
        except FileNotFoundError:
            log.error("outbound job %s: spool file %s is missing", job.id, job.spool_path)
            await asyncio.to_thread(self._fail_missing, job)
            return None
        try:
            results = await self._deliver(job, message)
        except Exception as exc:  # never let one job stop the queue
            log.exception("outbound job %s: delivery crashed", job.id)
            results = [RecipientResult(r, "retry", "4.3.0", f"internal error: {type(exc).__name__}")
                       for r in job.recipients]
        return Delivered(job, message, results)

    def _fail_missing(self, job: ClaimedJob) -> None:
        with self.session_factory() as session:
            outbound_repo.mark_failed(
                session, job_id=job.id, worker_id=self.worker_id, error="spool file missing"
            )
            session.commit()

    # --- delivery -----------------------------------------------------------------------

    def _options(self, *, smarthost: bool) -> TransportOptions:
        out = self.settings.outbound
        return TransportOptions(
            local_hostname=self.settings.mx.hostname,
            timeout=out.connect_timeout_seconds,
            verify_certs=smarthost,
            username=out.smarthost_username if smarthost else "",
            password=out.smarthost_password.get_secret_value() if smarthost else "",
        )

    async def _deliver(self, job: ClaimedJob, message: bytes) -> list[RecipientResult]:
        """Hosted recipients locally, the rest by smarthost or MX (each transport answers
        for its own recipients; the local one never raises)."""
        local = self.local
        hosted = [r for r in job.recipients if local is not None and local.is_local(r)]
        remote = [r for r in job.recipients if r not in hosted]
        results: list[RecipientResult] = []
        if hosted and local is not None:
            results.extend(await local.deliver(job, message, hosted))
        if remote:
            results.extend(await self._deliver_remote(job, message, remote))
        return results

    async def _deliver_remote(self, job: ClaimedJob, message: bytes,
                              recipients: list[str]) -> list[RecipientResult]:
        # The one place mail leaves the platform: our DKIM (and optional ARC) stamps go
        # on here, in a thread (SPEC §8b, mailplane/signing/outbound.py).
        try:
            message = await self.signer.sign(message, mail_from=job.mail_from, kind=job.kind)
        except SigningUnavailable as exc:  # this node's key is unusable: retry later
            return [RecipientResult(r, "retry", "4.3.5", f"DKIM signing unavailable: {exc}")
                    for r in recipients]
        out = self.settings.outbound
        if out.smarthost:
            return await send_message(
                [Candidate(out.smarthost, out.smarthost, out.smarthost_port)],
                mail_from=job.mail_from, recipients=recipients,
                message=message, options=self._options(smarthost=True),
            )
        by_domain: dict[str, list[str]] = defaultdict(list)
        for recipient in recipients:
            by_domain[recipient.rpartition("@")[2].lower()].append(recipient)
        results: list[RecipientResult] = []
        for domain, recipients in by_domain.items():
            results.extend(await self._deliver_domain(domain, recipients, job, message))
        return results

    async def _deliver_domain(
        self, domain: str, recipients: list[str], job: ClaimedJob, message: bytes
    ) -> list[RecipientResult]:
        try:
            hosts = await mx_hosts(self.resolver, domain)
        except RouteError as exc:
            outcome: Outcome = "failed" if exc.permanent else "retry"
            return [RecipientResult(r, outcome, exc.status, str(exc)) for r in recipients]
        candidates = [
            Candidate(host.name, address, self.mx_port)
            for host in hosts
            for address in await host_addresses(self.resolver, host.name)
        ]
        if not candidates:
            return [RecipientResult(r, "retry", "4.4.4", f"no address for the MX hosts of {domain}")
                    for r in recipients]
        return await send_message(
            candidates, mail_from=job.mail_from, recipients=recipients,
            message=message, options=self._options(smarthost=False),
        )

    def _record(self, delivered: list[Delivered]) -> None:
        if record(delivered, session_factory=self.session_factory, bounces=self.bounces,
                  worker_id=self.worker_id, now=self.clock.now(), out=self.settings.outbound):
            self.wake()  # a DSN is due now (a hosted sender gets it at once)
