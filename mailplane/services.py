"""Starting the mail services of a node (MX, submission, POP3, outbound worker).

Kept apart from :mod:`mailplane.serve` so each service's start-up lives next to the
others and ``serve`` stays a small orchestrator.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.policy import PolicyCache
from mailplane.settings import Settings

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
    return closers


def purge_once(settings: Settings) -> None:
    log.info("nothing to purge yet")
