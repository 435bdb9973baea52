"""Starting the mail services of a node (MX, submission, POP3, outbound worker).

Kept apart from :mod:`mailplane.serve` so each service's start-up lives next to the
others and ``serve`` stays a small orchestrator.  Every started service hands back an
async closer; closers run in reverse start order on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator
from mailplane.clock import Clock, SystemClock
from mailplane.policy import PolicyCache
from mailplane.settings import Settings
from mailplane.storage.db import make_engine, make_session_factory

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]


async def start_mail_services(
    settings: Settings,
    roles: tuple[str, ...],
    *,
    session_factory: sessionmaker[Session],
    policy: PolicyCache,
    clock: Clock,
    tasks: list[asyncio.Task[None]],
) -> list[Closer]:
    """Start the requested mail services; return their closers in start order."""
    closers: list[Closer] = []
    wake_worker = None
    if "worker" in roles:
        from mailplane.outbound.worker import OutboundWorker

        worker = OutboundWorker(settings, session_factory, clock,
                                worker_id=f"{socket.gethostname()}:{os.getpid()}")
        tasks.append(asyncio.create_task(worker.run(), name="outbound-worker"))
        # stop() lets the delivery in flight finish and hands unstarted claims back.
        closers.append(worker.stop)
        wake_worker = worker.wake
    authenticator = _authenticator(settings, session_factory, clock)
    serves_mail = ("mx" in roles and settings.mx.enabled) or (
        "submission" in roles and settings.submission.enabled
    )
    mx_handler = None
    if serves_mail:
        from mailplane.filters.engines.factory import build_spam_engine, build_virus_engine

        virus_engine = build_virus_engine(settings.virus)
        spam_engine = build_spam_engine(settings.spam)

        async def _close_engines() -> None:
            await virus_engine.aclose()
            await spam_engine.aclose()

        closers.append(_close_engines)
    if "mx" in roles and settings.mx.enabled:
        from mailplane.delivery.periodic import start_background_jobs
        from mailplane.smtp.mx import start_mx

        mx = await start_mx(settings, session_factory, policy, clock,
                            virus_engine=virus_engine, spam_engine=spam_engine,
                            on_outbound=wake_worker)
        mx_handler = mx.handler
        closers.append(mx.aclose)
        jobs = start_background_jobs(settings, session_factory, clock)
        closers.append(jobs.aclose)
    if "submission" in roles and settings.submission.enabled:
        from mailplane.smtp.submission import start_submission

        submission = await start_submission(
            settings, session_factory, policy, clock, authenticator=authenticator,
            virus_engine=virus_engine, spam_engine=spam_engine, local_delivery=mx_handler,
        )
        closers.append(submission.aclose)
    if "pop3" in roles and settings.pop3.enabled:
        from mailplane.pop3.server import start_pop3
        from mailplane.tls import server_ssl_context

        pop3 = await start_pop3(
            settings, session_factory, authenticator, clock,
            ssl_context=await asyncio.to_thread(server_ssl_context, settings),
            allow_plaintext_auth=settings.pop3.allow_plain_auth_on_loopback,
            idle_timeout_seconds=settings.pop3.idle_timeout_seconds,
        )
        closers.append(pop3.close)
    return closers


def _authenticator(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> Authenticator:
    """One credential check for POP3 and submission: same guard, same counters."""
    from mailplane.auth.login_guard import LoginGuard
    from mailplane.passwords import PasswordHashing

    guard = LoginGuard.from_settings(settings, session_factory, clock)
    return Authenticator(session_factory, PasswordHashing(settings.security), guard)


def purge_once(settings: Settings) -> None:
    """``mailplane purge``: delete expired quarantine and inbox mail now (SPEC §4, §8)."""
    from mailplane.delivery.retention import purge

    engine = make_engine(settings.database_url)
    try:
        result = purge(settings, make_session_factory(engine), SystemClock())
    finally:
        engine.dispose()
    print(f"purged {result.quarantine_deleted} quarantined and "
          f"{result.inbox_deleted} inbox messages")
