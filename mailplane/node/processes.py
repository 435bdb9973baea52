"""Extra MX worker processes sharing the listening socket (DESIGN "Keeping the SMTP path
fast": several worker processes share the listener with SO_REUSEPORT to use every core).

The node's own process runs the MX as usual; with ``mx.workers = N`` it also starts N-1
worker processes.  Each binds the same ``mx.host:port`` with ``SO_REUSEPORT`` (the kernel
spreads new connections over them) and starts through the same
:func:`~mailplane.node.bootstrap.run_node` with the ``mx`` role only: its own event loop,
database engine, policy cache (polling the revision like any node, so a settings change
reaches every worker within ``policy_refresh_seconds``) and scanner clients.  The
periodic jobs, POP3, submission and the API stay in the node's process.

Workers are started with the ``spawn`` method (no event loop or thread state inherited),
stopped with SIGTERM by the node on shutdown, and exit on their own if the node dies.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from multiprocessing.process import BaseProcess

from mailplane.config.settings import Settings
from mailplane.node.bootstrap import run_loop, run_node
from mailplane.node.logging import configure_logging

log = logging.getLogger(__name__)

_PARENT_POLL_SECONDS = 1.0


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("MX worker %d: node process gone, stopping", os.getpid())
            stop.set()
            return
        await asyncio.sleep(_PARENT_POLL_SECONDS)


def _worker_main(settings: Settings, parent: int) -> None:
    configure_logging(os.environ.get("MAILPLANE_LOG_LEVEL", settings.log_level), with_pid=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        watcher = asyncio.create_task(_watch_parent(parent, stop))
        try:
            await run_node(settings, ("mx",), stop, extra_worker=True)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    run_loop(settings, main())


class MxWorkers:
    """The extra MX worker processes of one node."""

    def __init__(self, processes: list[BaseProcess]) -> None:
        self.processes = processes

    @classmethod
    def start(cls, settings: Settings) -> MxWorkers:
        """Start ``settings.mx.workers - 1`` processes (the node's process is the first)."""
        context = multiprocessing.get_context("spawn")
        processes: list[BaseProcess] = []
        for index in range(1, settings.mx.workers):
            process = context.Process(target=_worker_main, args=(settings, os.getpid()),
                                      name=f"mailplane-mx-{index}", daemon=True)
            process.start()
            processes.append(process)
        log.info("started %d extra MX worker process(es)", len(processes))
        return cls(processes)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every worker and wait: each stops listening and closes its sessions; a
        message not yet answered 250 is the client's to retry, never lost (SPEC §8)."""
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():
                log.warning("MX worker %s did not stop in %.0fs; killing it",
                            process.name, timeout)
                process.kill()
                process.join()


def wants_workers(settings: Settings, roles: tuple[str, ...]) -> bool:
    return "mx" in roles and settings.mx.enabled and settings.mx.workers > 1
