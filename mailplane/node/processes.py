"""The processes of one node: its own, plus extra ones that use another core.

- **Extra MX processes** (DESIGN "Keeping the SMTP path fast"): with ``mx.workers = N``
  (default: one per CPU) the node starts N-1 processes that bind the same
  ``mx.host:port`` with ``SO_REUSEPORT`` (the kernel spreads new connections over them).
  The MX's connection limits hold for the node: its first process creates the shared
  counts file (:func:`node_counts_file`, :mod:`mailplane.net.anvil`) that every MX process
  counts in, and removes it when the node stops.
- **The outbound worker's own process** (``outbound.own_process``, on by default): when
  the node serves other roles too, forwards, replies and DSNs are sent from a process of
  their own, as Postfix's qmgr and smtp(8) are, so a burst of outbound work never takes
  the event loop or the GIL from SMTP sessions.  It finds new jobs by polling the queue
  (one read a second, ``outbound.poll_seconds``).

Each extra process starts through the same :func:`~mailplane.node.bootstrap.run_node`
with its roles only — its own event loop, database engine, policy cache (polling the
revision like any node) and scanner clients — while the periodic jobs, POP3, submission
and the API stay in the node's own process.  They are started with the ``spawn`` method
(no event loop or thread state inherited), stopped with SIGTERM by the node on shutdown
(each finishes what it is doing: an MX session in DATA gets its reply, the worker records
its delivery in flight and hands the rest of its claims back), and stop on their own if
the node dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from mailplane.config.settings import Settings
from mailplane.node.bootstrap import run_loop, run_node
from mailplane.node.logging import configure_logging

log = logging.getLogger(__name__)

_PARENT_POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class ProcessPlan:
    name: str
    roles: tuple[str, ...]


def plan_processes(settings: Settings,
                   roles: tuple[str, ...]) -> tuple[tuple[str, ...], list[ProcessPlan]]:
    """The roles of the node's own process and the extra processes to start."""
    main = roles
    extra: list[ProcessPlan] = []
    if "mx" in roles and settings.mx.enabled:
        extra += [ProcessPlan(f"mailplane-mx-{index}", ("mx",))
                  for index in range(1, settings.mx.workers)]
    if "worker" in roles and len(roles) > 1 and settings.outbound.own_process:
        main = tuple(role for role in roles if role != "worker")
        extra.append(ProcessPlan("mailplane-outbound", ("worker",)))
    return main, extra


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("process %d: node process gone, stopping", os.getpid())
            stop.set()
            return
        await asyncio.sleep(_PARENT_POLL_SECONDS)


@contextlib.contextmanager
def node_counts_file(settings: Settings, main_roles: tuple[str, ...],
                     extra: list[ProcessPlan]) -> Iterator[Path | None]:
    """The node's shared connection counts when it runs more than one MX process (else
    None: one process counts in memory), removed when the node stops."""
    mx_processes = sum("mx" in plan.roles for plan in extra) + ("mx" in main_roles)
    if mx_processes < 2 or not settings.mx.enabled:
        yield None
        return
    from mailplane.net.anvil import create_counts_file

    # Spare rows: a process that dies leaves its row until its pid is seen gone.
    try:
        path = create_counts_file(rows=mx_processes + 4)
    except OSError as exc:
        # Serving with per-process limits beats not serving; say so loudly.
        log.error("MX connection limits are counted per process (%d processes): %s",
                  mx_processes, exc)
        yield None
        return
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _process_main(settings: Settings, parent: int, roles: tuple[str, ...],
                  node_counts: Path | None = None) -> None:
    configure_logging(os.environ.get("MAILPLANE_LOG_LEVEL", settings.log_level), with_pid=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        watcher = asyncio.create_task(_watch_parent(parent, stop))
        try:
            await run_node(settings, roles, stop, extra_worker=True, node_counts=node_counts)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    run_loop(settings, main())


class NodeProcesses:
    """The extra processes of one node."""

    def __init__(self, processes: list[BaseProcess]) -> None:
        self.processes = processes

    @classmethod
    def start(cls, settings: Settings, plans: list[ProcessPlan], *,
              node_counts: Path | None = None) -> NodeProcesses:
        context = multiprocessing.get_context("spawn")
        processes: list[BaseProcess] = []
        for plan in plans:
            counts = node_counts if "mx" in plan.roles else None
            process = context.Process(target=_process_main,
                                      args=(settings, os.getpid(), plan.roles, counts),
                                      name=plan.name, daemon=True)
            process.start()
            processes.append(process)
        if plans:
            log.info("started %d extra process(es): %s", len(plans),
                     ", ".join(f"{p.name} ({','.join(p.roles)})" for p in plans))
        return cls(processes)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every process and wait: each finishes what it is doing (a message not
        yet answered 250 is the client's to retry, never lost, SPEC §8)."""
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():
                log.warning("process %s did not stop in %.0fs; killing it",
                            process.name, timeout)
                process.kill()
                process.join()
