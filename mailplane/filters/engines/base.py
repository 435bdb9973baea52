"""The two scanner protocols (SPEC §3, §4: scanning and the spam verdict are hooks).

An engine either returns a result or raises :class:`ScannerUnavailable`; the caller applies
the configured ``on_error`` (tempfail → ``451``, accept → deliver unscanned and say so in the
trace header).  An engine never decides what happens to the mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from typing import Protocol

from mailplane.mail.auth_results import AuthResults


class ScannerUnavailable(Exception):
    """The scanner could not give an answer (down, timed out, protocol error)."""


@dataclass(frozen=True, slots=True)
class VirusScanResult:
    infected: bool
    signature: str = ""


@dataclass(frozen=True, slots=True)
class SpamScanResult:
    is_spam: bool
    score: float
    threshold: float
    rules: tuple[str, ...] = ()


class VirusEngine(Protocol):
    name: str

    async def scan(self, data: bytes) -> VirusScanResult:
        """Scan raw bytes (a whole message or one decoded MIME part)."""
        ...

    async def aclose(self) -> None: ...


class SpamEngine(Protocol):
    name: str

    async def check(
        self, data: bytes, *, client_ip: str | None = None, helo: str | None = None,
        headers: Message | None = None, mail_from: str | None = None,
        auth: AuthResults | None = None,
    ) -> SpamScanResult:
        """Score a whole RFC 5322 message; ``client_ip`` feeds DNSBL checks.  ``headers``
        is the MX's compat32 parse of the header block (an engine may reuse it instead of
        parsing again, or ignore it).  ``mail_from`` is the envelope sender and ``auth``
        the MX's sender authentication (also in the message's Authentication-Results),
        None for mail that did not come from the Internet."""
        ...

    async def aclose(self) -> None: ...
