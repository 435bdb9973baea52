"""``mailplane serve``: every service of one node (or the roles asked for) until SIGTERM.

Roles (``--role mx,submission,pop3,api,worker``) let an operator split services across
machines; all of them share the database, so any subset works.  Extra processes of the
node — MX processes sharing the port, the outbound worker's own process — are planned in
:mod:`mailplane.node.processes`; every process starts through the same
:func:`~mailplane.node.bootstrap.run_node`.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from mailplane.config.settings import Settings
from mailplane.node.bootstrap import ALL_ROLES, run_loop, run_node


def parse_roles(value: str) -> tuple[str, ...]:
    if value in ("", "all"):
        return ALL_ROLES
    roles = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [r for r in roles if r not in ALL_ROLES]
    if unknown:
        raise SystemExit(f"mailplane: unknown role(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(ALL_ROLES)}")
    return roles


async def run_until_signalled(settings: Settings, roles: tuple[str, ...], *,
                              extra_worker: bool = False,
                              node_counts: Path | None = None) -> None:
    """:func:`run_node` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_node(settings, roles, stop, extra_worker=extra_worker, node_counts=node_counts)


def serve_forever(settings: Settings, *, roles: tuple[str, ...]) -> int:
    from mailplane.node.processes import NodeProcesses, node_counts_file, plan_processes

    main_roles, extra = plan_processes(settings, roles)
    with node_counts_file(settings, main_roles, extra) as counts:
        processes = NodeProcesses.start(settings, extra, node_counts=counts)
        try:
            run_loop(settings, run_until_signalled(settings, main_roles, node_counts=counts))
        finally:
            processes.stop()
    return 0


def purge_once(settings: Settings) -> None:
    """``mailplane purge``: delete expired quarantine and inbox mail now (SPEC §4, §8)."""
    from mailplane.clock import SystemClock
    from mailplane.delivery.retention import purge
    from mailplane.storage.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        result = purge(settings, make_session_factory(engine), SystemClock())
    finally:
        engine.dispose()
    print(f"purged {result.quarantine_deleted} quarantined and "
          f"{result.inbox_deleted} inbox messages")
