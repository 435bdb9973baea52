"""SpamAssassin ``spamd`` engine (SPEC §4: spamd is a production engine behind the hook).

Uses aiospamc's SYMBOLS request: spamd answers with its score and the names of the rules
that hit.  spamd's own ``required_score`` is ignored — the verdict uses OUR configured
``spam.threshold`` so the threshold is one setting whichever engine runs.  Like ``spamc``
(default ``-s 500K``), messages larger than ``max_size`` are not sent: SpamAssassin is slow
on them and big mail is rarely spam; they score 0 with the rule ``TOO_BIG_NOT_SCANNED``.
"""

from __future__ import annotations

import asyncio
from email.message import Message

import aiospamc

from mailplane.config.sections import SpamConfig
from mailplane.filters.engines.base import ScannerUnavailable, SpamScanResult
from mailplane.mail.auth_results import AuthResults

DEFAULT_MAX_SIZE = 500 * 1024


class SpamdEngine:
    """Asks spamd at ``spam.spamd_host:spam.spamd_port`` for a score and its rules."""

    name = "spamd"

    def __init__(self, settings: SpamConfig, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._host = settings.spamd_host
        self._port = settings.spamd_port
        self._threshold = settings.threshold
        self._timeout = settings.timeout_seconds
        self._max_size = max_size

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    async def check(
        self, data: bytes, *, client_ip: str | None = None, helo: str | None = None,
        headers: Message | None = None, mail_from: str | None = None,
        auth: AuthResults | None = None,
    ) -> SpamScanResult:
        # client_ip/helo are in the Received header the MX prepends, and the MX's
        # Authentication-Results is on top (SpamAssassin 4's AuthRes plugin uses it with
        # `authres_trusted_authserv <our authserv-id>`, docs/operations.md).
        if len(data) > self._max_size:
            return SpamScanResult(
                is_spam=False, score=0.0, threshold=self._threshold, rules=("TOO_BIG_NOT_SCANNED",)
            )
        try:
            async with asyncio.timeout(self._timeout):
                response = await aiospamc.symbols(
                    data,
                    host=self._host,
                    port=self._port,
                    timeout=aiospamc.Timeout(total=self._timeout),
                )
            spam_header = response.headers["Spam"]
            score = float(spam_header.score)
            body = bytes(response.body).decode("utf-8", "replace")
        except TimeoutError:
            raise ScannerUnavailable(
                f"spamd at {self.address} did not answer within {self._timeout:g} s"
            ) from None
        except Exception as exc:  # aiospamc raises many unrelated classes; all mean "no answer"
            raise ScannerUnavailable(
                f"spamd at {self.address} could not check the message: "
                f"{exc.__class__.__name__}: {exc}"
            ) from None
        rules = tuple(rule.strip() for rule in body.split(",") if rule.strip())
        return SpamScanResult(
            is_spam=score >= self._threshold, score=score, threshold=self._threshold, rules=rules
        )

    async def ping(self) -> None:
        """Raise :class:`ScannerUnavailable` unless spamd answers PING."""
        try:
            async with asyncio.timeout(self._timeout):
                await aiospamc.ping(
                    host=self._host, port=self._port, timeout=aiospamc.Timeout(total=self._timeout)
                )
        except TimeoutError:
            raise ScannerUnavailable(
                f"spamd at {self.address} did not answer within {self._timeout:g} s"
            ) from None
        except Exception as exc:
            raise ScannerUnavailable(
                f"spamd at {self.address} did not answer PING: {exc.__class__.__name__}: {exc}"
            ) from None

    async def aclose(self) -> None:
        return None
