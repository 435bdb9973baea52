"""The scan step: every engine runs at most once per message, before the pipeline
(SPEC §3, §4; DESIGN "A message through the MX service").

Scanning is I/O, so it happens here and the pure filters only read :class:`ScanResults`.
One ``on_error`` rule for every listener: an engine that cannot answer (down, timed out)
either defers the message — :class:`ScanDeferred`, answered ``451`` by SMTP and retried
by the queue, nothing stored — or, with ``on_error = accept``, lets it through unscanned
and the trace header says so.  A scanner that is down never silently passes mail.

When the whole message is infected, each leaf MIME part is scanned on its own so the
report's neutralised copy removes only what is to blame (SPEC §3, L4041-4069).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

from mailplane.config.sections import SpamConfig, VirusConfig
from mailplane.filters.base import ScanResults
from mailplane.filters.engines.base import (
    ScannerUnavailable,
    SpamEngine,
    SpamScanResult,
    VirusEngine,
    VirusScanResult,
)
from mailplane.mail.message import MessageContext
from mailplane.mail.mime import MimeTooComplex, leaf_parts, parse
from mailplane.policy.model import AddressPolicy

log = logging.getLogger(__name__)

#: What an engine failure looks like: its own error, a timeout, or the socket.
SCAN_ERRORS = (ScannerUnavailable, TimeoutError, OSError)


class ScanDeferred(Exception):
    """An engine could not answer and ``on_error = tempfail``: defer the message."""


class Scanner:
    """The node's engines with their timeouts and ``on_error`` rules."""

    def __init__(self, virus_engine: VirusEngine | None, spam_engine: SpamEngine | None, *,
                 virus: VirusConfig, spam: SpamConfig) -> None:
        self.virus_engine = virus_engine
        self.spam_engine = spam_engine
        self._virus = virus
        self._spam = spam

    def _unavailable(self, kind: Literal["virus", "spam"], name: str, exc: BaseException,
                     on_error: str) -> None:
        """The one ``on_error`` rule: raise :class:`ScanDeferred`, or return (accept)."""
        log.warning("%s engine %s unavailable: %s", kind, name, exc or type(exc).__name__)
        if on_error == "tempfail":
            raise ScanDeferred(kind) from None

    async def scan(self, ctx: MessageContext,
                   policies: Sequence[AddressPolicy]) -> ScanResults:
        """Run each engine some recipient wants; raises :class:`ScanDeferred`."""
        virus: VirusScanResult | None = None
        virus_unavailable = False
        infected_parts: frozenset[int] = frozenset()
        engine = self.virus_engine
        if engine is not None and any(p.virus_check for p in policies):
            try:
                virus = await asyncio.wait_for(engine.scan(ctx.raw), self._virus.timeout_seconds)
                if virus.infected:
                    infected_parts = await self._infected_parts(engine, ctx.raw)
            except SCAN_ERRORS as exc:
                if virus is not None and virus.infected:
                    log.warning("virus engine %s failed on the parts (%s): removing every "
                                "part", engine.name, exc)
                    infected_parts = frozenset()
                else:
                    self._unavailable("virus", engine.name, exc, self._virus.on_error)
                    virus_unavailable = True
        spam: SpamScanResult | None = None
        spam_unavailable = False
        spam_engine = self.spam_engine
        if spam_engine is not None and any(p.spam_judge for p in policies):
            try:
                spam = await asyncio.wait_for(
                    spam_engine.check(ctx.raw, client_ip=ctx.peer_ip, helo=ctx.helo,
                                      headers=ctx.headers, mail_from=ctx.envelope_sender,
                                      auth=ctx.auth),
                    self._spam.timeout_seconds,
                )
            except SCAN_ERRORS as exc:
                self._unavailable("spam", spam_engine.name, exc, self._spam.on_error)
                spam_unavailable = True
        return ScanResults(virus=virus, virus_unavailable=virus_unavailable,
                           infected_parts=infected_parts, spam=spam,
                           spam_unavailable=spam_unavailable)

    async def virus_of(self, raw: bytes) -> VirusScanResult | None:
        """The virus verdict on mail a customer sends (SPEC §3: the sender's setting
        decides, the caller asks only when it is ON); None = unscanned under ``accept``."""
        engine = self.virus_engine
        if engine is None:
            return None
        try:
            return await asyncio.wait_for(engine.scan(raw), self._virus.timeout_seconds)
        except SCAN_ERRORS as exc:
            self._unavailable("virus", engine.name, exc, self._virus.on_error)
            return None

    async def _infected_parts(self, engine: VirusEngine, raw: bytes) -> frozenset[int]:
        """Indexes (``leaf_parts`` order) of leaf parts the engine finds infected alone;
        empty (= remove every part) when the structure is beyond the MIME bounds."""
        try:
            message = parse(raw)
        except MimeTooComplex as exc:
            log.warning("virus parts not scanned one by one (%s): removing every part", exc)
            return frozenset()
        infected: set[int] = set()
        for index, part in enumerate(leaf_parts(message)):
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes) or not payload:
                continue
            result = await asyncio.wait_for(engine.scan(payload), self._virus.timeout_seconds)
            if result.infected:
                infected.add(index)
        return frozenset(infected)

    async def aclose(self) -> None:
        for engine in (self.virus_engine, self.spam_engine):
            if engine is not None:
                await engine.aclose()
