"""The outbound queue delivers concurrently (issue 20 finding 6; SPEC §8a): hosted mail has
its own lane, remote mail runs in parallel within a global and a per-destination limit,
every attempt has a time budget and tries a bounded number of MX addresses, and a
destination that never answers costs only its own jobs.

Real sockets throughout: the DNS stub on loopback (with names that never answer), tarpit
hosts that accept a connection and never greet, capture MX servers.  No timed assertions:
what is asserted is order and progress — the unrelated mail arrives while the stuck
attempt is still in progress.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import select, update

from mailplane.clock import as_utc
from mailplane.mailstore.spool import stage_job
from mailplane.storage.models import OutboundJob
from tests.factories.flow import FLOW_MX_SETTINGS, Flow
from tests.factories.mx import make_message
from tests.factories.outbound import (
    CaptureFactory,
    CaptureHandler,
    DnsStub,
    OutboundEnv,
    Tarpit,
    TarpitFactory,
    WorkerFactory,
)
from tests.factories.queue import STANDARD_ZONE, job, jobs, stage

TARO = "taro_1@e06.example.net"
JIRO = "jiro_3@e06.example.net"
HANAKO = "hanako_2@e06.example.net"
ALICE = "alice@sender.example"
PITS = [f"127.0.1.{n}" for n in range(1, 9)]

#: Attempts that, left alone, would wait a minute at each stuck step — far longer than the
#: unrelated mail needs; a stop cuts them after 0.2 s.
PATIENT = {"connect_timeout_seconds": 60.0, "dns_timeout_seconds": 60.0,
           "attempt_budget_seconds": 110.0, "stop_grace_seconds": 0.2}


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The flow (MX + worker with its local transport) on SQLite and on PostgreSQL."""
    overrides: dict[str, Any] = {**FLOW_MX_SETTINGS,
                                 "outbound": {**FLOW_MX_SETTINGS["outbound"], **PATIENT}}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return overrides


def _tarpit_domain(dns: DnsStub, domain: str = "tarpit.example") -> None:
    """``domain`` lists eight MX hosts, each a tarpit address."""
    dns.zone[domain] = {"MX": [(10 * n, f"mx{n}.{domain}") for n in range(1, 9)]}
    for n, host in enumerate(PITS, start=1):
        dns.zone[f"mx{n}.{domain}"] = {"A": [host]}


async def _until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Wait for ``condition`` (a liveness bound, not a speed claim)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


async def _settled(pits: Tarpit, at_least: int) -> dict[str, int]:
    """The tarpit's per-host connection counts once its thread has taken ``at_least``
    connections off the kernel's queue (and a moment for any more to show)."""
    await _until(lambda: pits.total >= at_least, f"{at_least} tarpit connection(s)")
    await asyncio.sleep(0.2)
    return dict(pits.accepted)


def _rows(flow: Flow, ids: list[str]) -> list[OutboundJob]:
    with flow.mx.session_factory() as session:
        return list(session.scalars(select(OutboundJob).where(OutboundJob.id.in_(ids))))


# --- the scenario -----------------------------------------------------------------


async def test_unrelated_and_hosted_mail_go_out_while_hostile_destinations_hold_attempts(
    flow: Flow, tarpit: TarpitFactory,
) -> None:
    """One message forwarded to two domains whose DNS never answers and one whose eight
    MX hosts accept and never greet, plus a backlog of twenty more for the tarpit: a
    forward to a good domain and a notice to a hosted address still go out while those
    attempts are stuck."""
    good = flow.remote("good.example", "127.0.0.2")
    pits = tarpit(PITS)
    _tarpit_domain(flow.dns)
    flow.dns.silent_names |= {"silent-one.example", "silent-two.example"}
    flow.mx.add_address(HANAKO)
    flow.mx.add_address(JIRO)
    flow.set_forwarding(TARO, ["a@silent-one.example", "b@silent-two.example",
                               "c@tarpit.example"], keep_copy=True)
    flow.set_forwarding(JIRO, ["bob@good.example"], keep_copy=False)
    await flow.mx.send(make_message(subject="stuck"), mail_from=ALICE)
    with flow.mx.session_factory() as session:
        for n in range(20):
            stage_job(session, spool_dir=flow.mx.settings.spool_dir, kind="forward",
                      mail_from=ALICE, recipients=[f"backlog{n}@tarpit.example"],
                      message=make_message(subject=f"backlog {n}"), now=flow.mx.clock.now())
        session.commit()
    hostile = [j.id for j in jobs(_env(flow))]

    running = asyncio.create_task(flow.worker.run())
    try:
        await _until(lambda: pits.open >= 1
                     and {("silent-one.example", "MX"), ("silent-two.example", "MX")}
                     <= set(flow.dns.queries), "the hostile attempts started")
        # Now the unrelated mail: a forward to a good domain, a notice to a hosted address.
        await flow.mx.send(make_message(subject="unrelated"), mail_from=ALICE,
                           rcpt_tos=[JIRO])
        with flow.mx.session_factory() as session:
            stage_job(session, spool_dir=flow.mx.settings.spool_dir, kind="notice",
                      mail_from="", recipients=[HANAKO],
                      message=make_message(subject="notice"), now=flow.mx.clock.now())
            session.commit()
        flow.worker.wake()
        await _until(lambda: bool(good.envelopes) and bool(flow.mx.inbox(HANAKO)),
                     "the unrelated remote and hosted mail went out")

        # ... while the hostile attempts are still in progress: a tarpit still holds a
        # connection that never got a greeting, and no hostile job has an outcome yet.
        assert pits.open >= 1
        rows = _rows(flow, hostile)
        assert {(r.status, r.attempts) for r in rows} == {("queued", 0)}
        # This worker took no more of the tarpit's backlog than it can soon run (twice
        # the destination limit of 5): the rest stay due for other workers and nodes.
        assert sum(1 for r in rows if r.claimed_by == "w1"
                   and next(iter(r.recipients)).startswith("backlog")) <= 10
        assert [e.rcpt_tos for e in good.envelopes] == [["bob@good.example"]]
    finally:
        await flow.worker.stop()
        await running

    # Stopped: the cut attempts and the parked jobs are queued again, due at once, their
    # recipients intact; nothing was lost and no connection was left open.
    rows = _rows(flow, hostile)
    assert {(r.status, r.claimed_by) for r in rows} == {("queued", None)}
    assert all(as_utc(r.next_attempt_at) <= flow.mx.clock.now() for r in rows)
    assert sorted(r for row in rows for r in row.recipients) == sorted(
        ["a@silent-one.example", "b@silent-two.example", "c@tarpit.example"]
        + [f"backlog{n}@tarpit.example" for n in range(20)])
    await _until(lambda: pits.open == 0, "the tarpit connections were closed")


def _env(flow: Flow) -> OutboundEnv:
    return OutboundEnv(flow.mx.settings, flow.mx.session_factory, flow.mx.clock)


# --- per-destination and global limits ------------------------------------------------


@dataclass
class Probe:
    """Sessions inside DATA at once, per capture host.  Each waits until ``target`` are
    inside together and no other has arrived for ``quiet`` seconds (or all ``expected``
    are in; or, when fewer than ``target`` can be — the jobs left are for one full
    destination — ``patience`` seconds, well within the worker's reply timeout): every
    session the worker runs at once is inside together, so the maxima are what it
    allows."""

    expected: int
    target: int
    quiet: float = 0.3
    patience: float = 1.0
    inside: Counter[str] = field(default_factory=Counter)
    most: Counter[str] = field(default_factory=Counter)
    most_total: int = 0
    arrived: int = 0
    last_arrival: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ProbedCapture(CaptureHandler):
    probe: Probe = field(default_factory=lambda: Probe(0, 0))
    host: str = ""

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        probe = self.probe
        with probe.lock:
            probe.inside[self.host] += 1
            probe.arrived += 1
            probe.last_arrival = time.monotonic()
            probe.most[self.host] = max(probe.most[self.host], probe.inside[self.host])
            probe.most_total = max(probe.most_total, sum(probe.inside.values()))
        try:
            while True:
                with probe.lock:
                    since = time.monotonic() - probe.last_arrival
                    full = sum(probe.inside.values()) >= probe.target
                    if (probe.arrived >= probe.expected or since >= probe.patience
                            or (full and since >= probe.quiet)):
                        break
                await asyncio.sleep(0.02)
            return await super().handle_DATA(server, session, envelope)
        finally:
            with probe.lock:
                probe.inside[self.host] -= 1


def _probed(capture_mx: CaptureFactory, probe: Probe, host: str) -> CaptureHandler:
    handler = ProbedCapture(probe=probe, host=host)
    capture_mx(host, handler=handler)
    return handler


async def test_one_destination_gets_at_most_its_concurrency_limit_of_sessions(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    capture_mx: CaptureFactory, make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(outbound={"destination_concurrency_limit": 3,
                                      "connect_timeout_seconds": 30.0})
    dns_stub.zone.update(STANDARD_ZONE)
    probe = Probe(expected=9, target=3)
    handler = _probed(capture_mx, probe, "127.0.0.2")
    for n in range(9):
        stage(env, recipients=[f"user{n}@dest.test"])

    assert await make_worker(env).run_once() == 9

    assert probe.most["127.0.0.2"] == 3  # in parallel, and never more than the limit
    assert sorted(r for e in handler.envelopes for r in e.rcpt_tos) == sorted(
        f"user{n}@dest.test" for n in range(9))
    assert {j.status for j in jobs(env)} == {"sent"}


async def test_all_destinations_together_get_at_most_the_global_limit(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    capture_mx: CaptureFactory, make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(outbound={"concurrency_limit": 4,
                                      "destination_concurrency_limit": 3,
                                      "connect_timeout_seconds": 30.0})
    dns_stub.zone.update(STANDARD_ZONE)
    probe = Probe(expected=12, target=4)
    _probed(capture_mx, probe, "127.0.0.2")  # dest.test
    _probed(capture_mx, probe, "127.0.0.3")  # nomx.test (its A record)
    for n in range(6):
        stage(env, recipients=[f"a{n}@dest.test"])
        stage(env, recipients=[f"b{n}@nomx.test"])

    assert await make_worker(env).run_once() == 12

    assert probe.most_total == 4
    assert max(probe.most.values()) <= 3
    assert {j.status for j in jobs(env)} == {"sent"}


# --- one attempt: MX addresses, sessions, budget ------------------------------------------


async def test_an_attempt_connects_to_at_most_mx_session_limit_hosts_that_never_greet(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    tarpit: TarpitFactory, make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(outbound={"connect_timeout_seconds": 0.3})
    _tarpit_domain(dns_stub)
    pits = tarpit(PITS)
    job_id = stage(env, recipients=["c@tarpit.example"])

    await make_worker(env).run_once()

    assert await _settled(pits, 2) == {host: 1 if host in PITS[:2] else 0 for host in PITS}
    row = job(env, job_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "session limit 2 reached" in row.last_error
    # Addresses were looked up for the first five MX hosts only (smtp_mx_address_limit).
    looked_up = {name for name, kind in dns_stub.queries if kind == "A"}
    assert looked_up == {f"mx{n}.tarpit.example" for n in range(1, 6)}


async def test_an_attempt_tries_at_most_mx_address_limit_addresses(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    tarpit: TarpitFactory, make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(outbound={"connect_timeout_seconds": 0.3,
                                      "mx_session_limit": 50, "mx_address_limit": 5})
    _tarpit_domain(dns_stub)
    pits = tarpit(PITS)
    stage(env, recipients=["c@tarpit.example"])

    await make_worker(env).run_once()

    assert await _settled(pits, 5) == {host: 1 if host in PITS[:5] else 0 for host in PITS}


async def test_the_attempt_budget_ends_an_attempt_whose_steps_would_each_wait_longer(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    tarpit: TarpitFactory, make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(outbound={"connect_timeout_seconds": 60.0,
                                      "attempt_budget_seconds": 0.5})
    _tarpit_domain(dns_stub)
    pits = tarpit(PITS)
    job_id = stage(env, recipients=["c@tarpit.example"])

    await make_worker(env).run_once()

    row = job(env, job_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "attempt budget of 0.5s" in row.last_error
    assert sum((await _settled(pits, 1)).values()) == 1  # cut waiting for the 1st greeting
    await _until(lambda: pits.open == 0, "the cut connection was closed")


# --- dead destinations ------------------------------------------------------------------


async def test_a_tarpit_destination_is_dead_and_its_other_jobs_wait_without_a_connection(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    tarpit: TarpitFactory, capture_mx: CaptureFactory, make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(outbound={"connect_timeout_seconds": 0.3})
    _tarpit_domain(dns_stub)
    dns_stub.zone.update(STANDARD_ZONE)
    pits = tarpit(PITS)
    good = capture_mx("127.0.0.2")
    worker = make_worker(env)
    first = stage(env, recipients=["c@tarpit.example"])
    await worker.run_once()
    assert sum((await _settled(pits, 2)).values()) == 2

    second = stage(env, recipients=["d@tarpit.example"])
    other = stage(env, recipients=["bob@dest.test"])
    assert await worker.run_once() == 2

    assert sum((await _settled(pits, 2)).values()) == 2  # not tried: the destination is dead
    row = job(env, second)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "temporarily suspended" in row.last_error
    dead_until = env.clock.now() + timedelta(
        seconds=env.settings.outbound.dead_destination_seconds)
    assert as_utc(row.next_attempt_at) >= dead_until
    assert as_utc(job(env, first).next_attempt_at) == env.clock.now() + timedelta(seconds=60)
    assert job(env, other).status == "sent"  # another destination is not affected
    assert [e.rcpt_tos for e in good.envelopes] == [["bob@dest.test"]]

    env.clock.advance(timedelta(seconds=61))
    assert await worker.run_once() == 1  # the first job's own retry; no hot loop
    assert sum((await _settled(pits, 2)).values()) == 2  # still dead: deferred, no connection
    env.clock.set(as_utc(job(env, second).next_attempt_at))
    assert await worker.run_once() == 2
    assert sum((await _settled(pits, 3)).values()) > 2  # the throttle is over: tried again


async def test_a_destination_whose_dns_never_answers_is_dead_too(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(outbound={"dns_timeout_seconds": 0.3})
    dns_stub.silent_names.add("silent.example")
    worker = make_worker(env)
    first = stage(env, recipients=["a@silent.example"])
    await worker.run_once()
    assert job(env, first).last_error.startswith("MX lookup for silent.example failed")
    asked = len(dns_stub.queries)

    second = stage(env, recipients=["b@silent.example"])
    await worker.run_once()

    assert len(dns_stub.queries) == asked  # deferred without a lookup
    row = job(env, second)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "temporarily suspended" in row.last_error
    assert await worker.run_once() == 0  # neither is due: no loop


# --- claims ---------------------------------------------------------------------------


@dataclass
class HeldCapture(CaptureHandler):
    """Holds the first DATA until the test lets it go."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    held: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        if not self.entered.is_set():
            self.held = list(envelope.rcpt_tos)
            self.entered.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return await super().handle_DATA(server, session, envelope)


async def test_a_job_whose_claim_was_taken_while_it_waited_for_a_slot_is_not_sent(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    capture_mx: CaptureFactory, make_worker: WorkerFactory,
) -> None:
    """A job waits for its destination's slot; meanwhile its lease ran out and another
    worker claimed it.  Before its attempt the waiting worker renews the claim, finds it
    lost, and sends nothing: the job is delivered by one worker only."""
    env = make_outbound_env(outbound={"destination_concurrency_limit": 1})
    dns_stub.zone.update(STANDARD_ZONE)
    handler = HeldCapture()
    capture_mx("127.0.0.2", handler=handler)
    ids = {r: stage(env, recipients=[r]) for r in ("one@dest.test", "two@dest.test")}
    # A lease shorter than an attempt's budget: renewed before every attempt.
    worker = make_worker(env, lease=timedelta(seconds=30))

    delivering = asyncio.create_task(worker.run_once())
    await asyncio.to_thread(handler.entered.wait, 30)
    [sending] = handler.held
    [waiting] = [r for r in ids if r != sending]
    with env.session_factory() as session:  # the other worker took the waiting job
        session.execute(update(OutboundJob).where(OutboundJob.id == ids[waiting])
                        .values(claimed_by="w2"))
        session.commit()
    handler.release.set()
    assert await delivering == 2

    assert [e.rcpt_tos for e in handler.envelopes] == [[sending]]
    assert job(env, ids[sending]).status == "sent"
    row = job(env, ids[waiting])
    assert (row.status, row.claimed_by, row.attempts) == ("queued", "w2", 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_env(request: pytest.FixtureRequest,
               make_outbound_env: Callable[..., OutboundEnv]) -> OutboundEnv:
    if request.param == "sqlite":
        return make_outbound_env()
    return make_outbound_env(database_url=request.getfixturevalue("pg_url"))


async def test_two_running_workers_send_every_job_once_on_sqlite_and_postgresql(
    shared_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    """Two workers (each its own engine, as two nodes) claim while their earlier jobs are
    still in flight: every job is sent exactly once, none is left behind."""
    from mailplane.storage.db import make_engine, make_session_factory

    dns_stub.zone.update(STANDARD_ZONE)
    remote = capture_mx("127.0.0.2")
    engine = make_engine(shared_env.settings.database_url)
    other = OutboundEnv(shared_env.settings, make_session_factory(engine), shared_env.clock)
    workers = [make_worker(shared_env, "a", batch_size=4, poll_seconds=0.05),
               make_worker(other, "b", batch_size=4, poll_seconds=0.05)]
    running = [asyncio.create_task(w.run()) for w in workers]
    try:
        for n in range(60):
            await asyncio.to_thread(stage, shared_env, recipients=[f"u{n}@dest.test"])
            workers[n % 2].wake()
        await _until(lambda: len(remote.envelopes) >= 60
                     and all(w.active_jobs == 0 for w in workers), "every job was sent",
                     seconds=60)
    finally:
        for worker in workers:
            await worker.stop()
        await asyncio.gather(*running)
        engine.dispose()
    sent = Counter(r for e in remote.envelopes for r in e.rcpt_tos)
    assert sent == Counter(f"u{n}@dest.test" for n in range(60))
    assert {j.status for j in jobs(shared_env)} == {"sent"}

