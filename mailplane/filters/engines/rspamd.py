"""rspamd engine over its HTTP ``/checkv2`` API (SPEC §4: rspamd is a production engine).

The message is POSTed raw — with our ``Authentication-Results`` on top when it came through
the MX; the connecting IP, HELO and envelope sender go in the ``IP``, ``Helo`` and ``From``
request headers (rspamd "Protocol", request headers) so rspamd's own IP-based and SPF
checks see what the MX saw.  The
answer's ``score`` is compared with OUR ``spam.threshold``; rspamd's ``required_score`` and
``action`` are only informational.  Any transport error, timeout, non-200 status or an
answer without a score raises :class:`ScannerUnavailable`.
"""

from __future__ import annotations

from email.message import Message
from typing import Any

import httpx

from mailplane.config.sections import SpamConfig
from mailplane.filters.engines.base import ScannerUnavailable, SpamScanResult
from mailplane.mail.auth_results import AuthResults
from mailplane.mail.trace import printable


class RspamdEngine:
    """Asks rspamd at ``spam.rspamd_url`` for a score and its symbols."""

    name = "rspamd"

    def __init__(self, settings: SpamConfig, *, client: httpx.AsyncClient | None = None) -> None:
        self._url = settings.rspamd_url.rstrip("/") + "/checkv2"
        self._threshold = settings.threshold
        self._timeout = settings.timeout_seconds
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=self._timeout)

    async def check(
        self, data: bytes, *, client_ip: str | None = None, helo: str | None = None,
        headers: Message | None = None, mail_from: str | None = None,
        auth: AuthResults | None = None,
    ) -> SpamScanResult:
        request_headers = {"Content-Type": "message/rfc822"}
        if client_ip:
            request_headers["IP"] = client_ip
        if helo:
            request_headers["Helo"] = helo
        if mail_from:
            request_headers["From"] = printable(mail_from, 320)
        try:
            response = await self._client.post(
                self._url, content=data, headers=request_headers, timeout=self._timeout
            )
        except httpx.TimeoutException:
            raise ScannerUnavailable(
                f"rspamd at {self._url} did not answer within {self._timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise ScannerUnavailable(
                f"rspamd at {self._url} is unreachable: {exc.__class__.__name__}: {exc}"
            ) from None
        if response.status_code != 200:
            raise ScannerUnavailable(
                f"rspamd at {self._url} answered HTTP {response.status_code}"
            )
        return self._result(response)

    def _result(self, response: httpx.Response) -> SpamScanResult:
        try:
            answer: Any = response.json()
            score = float(answer["score"])
        except (ValueError, KeyError, TypeError):
            raise ScannerUnavailable(
                f"rspamd at {self._url} gave an answer without a score"
            ) from None
        symbols = answer.get("symbols") or {}
        rules = tuple(sorted(str(name) for name in symbols)) if isinstance(symbols, dict) else ()
        return SpamScanResult(
            is_spam=score >= self._threshold, score=score, threshold=self._threshold, rules=rules
        )

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
