"""One bootstrap for every process of a node: ``mailplane serve`` (any subset of roles)
and each extra MX worker process start here.

:func:`run_node` builds what the roles share — the database engine, the policy cache
(first load waits for the database; then polled, SIGHUP reloads at once), the scanners
and the one :class:`~mailplane.delivery.local.LocalDelivery` that the MX, submission and
the outbound worker all deliver through — then starts each role's service, waits for
``stop`` and closes everything in reverse order.  Every background task is kept and
awaited.  Before any listener starts, the process's descriptor limit is raised and the
listeners' connection limits are fitted into it, and the event loop's own error reports
(``accept()`` at EMFILE) are logged once per interval (:mod:`mailplane.node.listeners`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator
from mailplane.clock import Clock, SystemClock
from mailplane.config.settings import ConfigError, Settings
from mailplane.node.policy_cache import PolicyCache
from mailplane.storage.db import make_engine, make_session_factory

log = logging.getLogger(__name__)

ALL_ROLES = ("api", "mx", "submission", "pop3", "worker", "imap", "webmail")

Closer = Callable[[], Awaitable[None]]


def run_loop(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on the configured event loop (``event_loop``): uvloop when it is
    installed and not turned off, asyncio's own loop otherwise."""
    if settings.event_loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if settings.event_loop == "uvloop":
                raise ConfigError("event_loop: uvloop is not installed") from None
        else:
            log.info("event loop: uvloop %s", getattr(uvloop, "__version__", "?"))
            uvloop.run(main)
            return
    log.info("event loop: asyncio")
    asyncio.run(main)


async def run_node(settings: Settings, roles: tuple[str, ...], stop: asyncio.Event, *,
                   extra_worker: bool = False, node_counts: Path | None = None) -> None:
    """Serve ``roles`` until ``stop`` is set.  ``extra_worker``: an extra process of the
    node (another MX sharing the port, the outbound worker's own process —
    :mod:`mailplane.node.processes`), which leaves the periodic jobs to the node's own.
    ``node_counts``: the MX processes' shared connection counts (several MX processes)."""
    from mailplane.net.throttled_log import ThrottledLog, install_loop_exception_handler
    from mailplane.node.listeners import fit_connection_limits, raise_fd_limit

    install_loop_exception_handler(asyncio.get_running_loop(),
                                   ThrottledLog(logging.getLogger("mailplane.loop")))
    from mailplane.node.anywhere import prepare_state_dir

    settings = fit_connection_limits(settings, roles, raise_fd_limit())
    clock = SystemClock()
    # Database, secrets, mail: owner only (issue 15) — and before any mail is written, a
    # root node hands the mail tree to Dovecot's user (SPEC §9b).
    prepare_state_dir(settings)
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    session_factory = make_session_factory(engine)
    policy = PolicyCache(session_factory, base_domains=tuple(settings.base_domains),
                         refresh_seconds=settings.mx.policy_refresh_seconds, clock=clock)
    if not await _first_policy_load(policy, stop):
        engine.dispose()
        return
    closers: list[Closer] = []
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(policy.run(), name="policy-cache")]
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, policy.request_reload)
    try:
        closers.extend(await _start_services(
            settings, roles, session_factory=session_factory, policy=policy, clock=clock,
            tasks=tasks, extra_worker=extra_worker, node_counts=node_counts))
        await stop.wait()
    finally:
        log.info("shutting down")
        for close in reversed(closers):
            try:
                await close()
            except Exception:
                log.exception("error while stopping a service")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        engine.dispose()


async def _start_services(
    settings: Settings,
    roles: tuple[str, ...],
    *,
    session_factory: sessionmaker[Session],
    policy: PolicyCache,
    clock: Clock,
    tasks: list[asyncio.Task[None]],
    extra_worker: bool,
    node_counts: Path | None = None,
) -> list[Closer]:
    """Start each role's service; return their closers in start order."""
    closers: list[Closer] = []
    mx_on = "mx" in roles and settings.mx.enabled
    submission_on = "submission" in roles and settings.submission.enabled
    worker_on = "worker" in roles
    delivery = None
    if mx_on or submission_on or worker_on:
        # The worker needs it too: its local transport delivers queued mail for hosted
        # addresses (forwards, replies, DSNs, notices) through the same pipeline.
        from mailplane.delivery.local import LocalDelivery
        from mailplane.filters.engines.factory import build_spam_engine, build_virus_engine
        from mailplane.filters.scan import Scanner
        from mailplane.mail.srs import srs_from_settings

        scanner = Scanner(build_virus_engine(settings.virus), build_spam_engine(settings.spam),
                          virus=settings.virus, spam=settings.spam)
        closers.append(scanner.aclose)
        delivery = LocalDelivery(settings, session_factory, clock, scanner=scanner,
                                 srs=srs_from_settings(settings, clock), policy=policy)
        # Closed after the listeners and the worker that feed it (closers run reversed).
        closers.append(delivery.aclose)
    if worker_on and delivery is not None:
        from mailplane.outbound.local_transport import LocalTransport
        from mailplane.outbound.worker import OutboundWorker

        worker = OutboundWorker(settings, session_factory, clock,
                                worker_id=f"{socket.gethostname()}:{os.getpid()}",
                                local=LocalTransport(delivery, clock, session_factory))
        delivery.on_outbound = worker.wake
        tasks.append(asyncio.create_task(worker.run(), name="outbound-worker"))
        # stop() lets the delivery in flight finish and hands unstarted claims back.
        closers.append(worker.stop)
    if mx_on:
        from mailplane.smtp.mx import start_mx

        mx = await start_mx(settings, session_factory, policy, clock, delivery=delivery,
                            node_counts=node_counts)
        closers.append(mx.aclose)
        if not extra_worker:
            from mailplane.delivery.periodic import start_background_jobs

            closers.append(start_background_jobs(settings, session_factory, clock).aclose)
    pop3_on = "pop3" in roles and settings.pop3.enabled
    imap_on = "imap" in roles and settings.imap.enabled
    session_ends = None
    if (pop3_on or imap_on) and not extra_worker:
        # Open sessions end when a change on any node invalidates what let them in.
        from mailplane.delivery.session_ends import SessionEnds

        session_ends = SessionEnds(
            session_factory, poll_seconds=settings.security.session_end_check_seconds,
            again_after_seconds=settings.imap.auth_timeout_seconds
            + settings.security.session_end_check_seconds)
    authenticator = (_authenticator(settings, session_factory, clock)
                     if submission_on or pop3_on else None)
    if submission_on and authenticator is not None:
        from mailplane.smtp.submission_server import start_submission

        submission = await start_submission(settings, session_factory, policy, clock,
                                            authenticator=authenticator, delivery=delivery)
        closers.append(submission.aclose)
    if pop3_on and authenticator is not None:
        from mailplane.net.tls import server_ssl_context
        from mailplane.pop3.server import start_pop3

        pop3 = await start_pop3(
            settings, session_factory, authenticator, clock,
            ssl_context=await asyncio.to_thread(server_ssl_context, settings),
            allow_plaintext_auth=settings.pop3.allow_plain_auth_on_loopback,
            idle_timeout_seconds=settings.pop3.idle_timeout_seconds,
        )
        closers.append(pop3.close)
        if session_ends is not None:
            session_ends.subscribe("pop3", pop3.end_sessions)
    if "api" in roles:
        closers.append(_start_api(settings, policy, clock, tasks))
    if imap_on:
        from mailplane.node.anywhere import start_imap

        closers.extend(await start_imap(settings, session_factory, policy, clock, tasks,
                                        session_ends=session_ends))
    if session_ends is not None:
        await session_ends.start()
        closers.append(session_ends.stop)
    if "webmail" in roles and settings.webmail.enabled:
        from mailplane.node.anywhere import start_webmail

        closers.extend(await start_webmail(settings))
    return closers


def _start_api(settings: Settings, policy: PolicyCache, clock: Clock,
               tasks: list[asyncio.Task[None]]) -> Closer:
    """The API on its own connection pool (``api.app.api_engine``): an API flood cannot
    take the connections that POP3 logins and delivery need (issue 15)."""
    from mailplane.api.app import create_app
    from mailplane.net.gate import ACCEPT_BATCH
    from mailplane.net.limits import ConnectionLimiter, ConnectionLimits
    from mailplane.node.listeners import gated_http_protocol

    app = create_app(settings, clock=clock, extra_state={"policy_cache": policy})
    limiter = ConnectionLimiter(ConnectionLimits.from_settings(
        "api", settings.api, settings.security.limit_exempt_networks))
    config = uvicorn.Config(
        app, host=settings.api.host, port=settings.api.port, log_level="warning",
        lifespan="off", backlog=min(settings.api.listen_backlog, ACCEPT_BATCH),
        timeout_keep_alive=max(1, round(settings.api.keep_alive_seconds)),
        http=gated_http_protocol(limiter, settings.api.greeting_deadline_seconds))
    server = _EmbeddedUvicorn(config, listen_backlog=settings.api.listen_backlog)
    serving = asyncio.create_task(server.serve(), name="api")
    tasks.append(serving)
    log.info("API listening on http://%s:%d", settings.api.host, settings.api.port)

    async def stop_api() -> None:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(serving), 30)
        app.state.engine.dispose()

    return stop_api


def _authenticator(settings: Settings, session_factory: sessionmaker[Session],
                   clock: Clock) -> Authenticator:
    """One credential check for POP3 and submission: same guard, same counters."""
    from mailplane.auth.login_guard import LoginGuard
    from mailplane.auth.passwords import PasswordHashing

    guard = LoginGuard.from_settings(settings, session_factory, clock)
    return Authenticator(session_factory, PasswordHashing(settings.security), guard)


async def _first_policy_load(policy: PolicyCache, stop: asyncio.Event) -> bool:
    """Load the policy before listening, waiting for the database if it is not up yet.

    A node never serves from an empty snapshot (it would refuse every recipient), and a
    database that comes up after the node is not fatal: retry with a growing delay until
    it answers or the node is told to stop.  Returns False if stopped first.
    """
    delay = 1.0
    while True:
        try:
            await asyncio.to_thread(policy.load_now)
            return True
        except Exception as exc:
            log.warning("database not reachable at start-up, retrying in %.0f s: %s", delay,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return False
        delay = min(delay * 2, 30.0)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside our loop: the node, not uvicorn, owns SIGTERM/SIGINT.  uvicorn is
    given the small accept batch as its backlog; the kernel backlog is widened after."""

    def __init__(self, config: uvicorn.Config, *, listen_backlog: int) -> None:
        super().__init__(config)
        self._listen_backlog = listen_backlog

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        from mailplane.net.gate import widen_backlog

        for server in getattr(self, "servers", []):
            widen_backlog(server, self._listen_backlog)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
