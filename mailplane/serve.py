"""``mailplane serve``: every service of one node in one event loop.

Roles (``--role mx,submission,pop3,api,worker``) let an operator split services across
machines; all of them share the database, so any subset works (issue "Several nodes").
SIGTERM/SIGINT stop accepting and close every service in order; SIGHUP reloads the policy
cache at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator

import uvicorn

from mailplane.api.app import create_app
from mailplane.clock import SystemClock
from mailplane.policy import PolicyCache
from mailplane.settings import Settings
from mailplane.storage.db import make_engine, make_session_factory

log = logging.getLogger(__name__)

ALL_ROLES = ("api", "mx", "submission", "pop3", "worker")


def parse_roles(value: str) -> tuple[str, ...]:
    if value in ("", "all"):
        return ALL_ROLES
    roles = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [r for r in roles if r not in ALL_ROLES]
    if unknown:
        raise SystemExit(f"mailplane: unknown role(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(ALL_ROLES)}")
    return roles


Closer = Callable[[], Awaitable[None]]


async def run_node(settings: Settings, roles: tuple[str, ...], stop: asyncio.Event) -> None:
    clock = SystemClock()
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    session_factory = make_session_factory(engine)
    policy = PolicyCache(
        session_factory,
        base_domains=tuple(settings.base_domains),
        refresh_seconds=settings.mx.policy_refresh_seconds,
        clock=clock,
    )
    if not await _first_policy_load(policy, stop):
        engine.dispose()
        return
    closers: list[Closer] = []
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(policy.run(), name="policy-cache")]
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, policy.request_reload)

    from mailplane import services

    try:
        closers.extend(
            await services.start_mail_services(
                settings, roles, session_factory=session_factory, policy=policy, clock=clock,
                tasks=tasks,
            )
        )
        if "api" in roles:
            app = create_app(settings, clock=clock, session_factory=session_factory,
                             extra_state={"policy_cache": policy})
            config = uvicorn.Config(
                app, host=settings.api.host, port=settings.api.port, log_level="warning",
                lifespan="off",
            )
            server = _EmbeddedUvicorn(config)
            tasks.append(asyncio.create_task(server.serve(), name="api"))

            async def _stop_api() -> None:
                server.should_exit = True

            closers.append(_stop_api)
            log.info("API listening on http://%s:%d", settings.api.host, settings.api.port)
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
    """uvicorn inside our loop: the node, not uvicorn, owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve_forever(settings: Settings, *, roles: tuple[str, ...]) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_node(settings, roles, stop)

    from mailplane.smtp.workers import MxWorkers, wants_workers

    workers = MxWorkers.start(settings) if wants_workers(settings, roles) else None
    try:
        asyncio.run(main())
    finally:
        if workers is not None:
            workers.stop()
    return 0


def purge_once(settings: Settings) -> None:
    from mailplane import services

    services.purge_once(settings)
