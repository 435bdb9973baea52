"""Mail to our SRS addresses: only real bounces of real forwards are relayed (SPEC §5,
issue 20 findings 1 and 10).

An SRS address stands for the original sender of a forward; what arrives at it goes on
to that sender, outside the platform.  Before, any null-sender mail to any address with
a valid 4-character hash was relayed as it was — unscanned, unlimited, for 21 days, and a
hash could be guessed in minutes.  Now, at the MX:

- **RCPT** (:meth:`SrsReturns.rcpt`): the null sender only (``550 5.7.1``); a well-formed,
  unexpired address whose 50-bit hash verifies (:mod:`mailplane.mail.srs`); and one that
  mailplane really emitted for a forward, recorded in ``srs_forwards`` with the
  destinations it went to and not expired (a guessed or forged one: ``550 5.1.1``).
  Then the rate limits, shared by every node: ``srs.returns_per_address_per_hour`` per
  SRS address and ``srs.returns_per_ip_per_hour`` per client IP (``450 4.7.1``).
- **Invalid recipients count against the client**: each is an error reply of the
  session's tarpit (:mod:`mailplane.smtp.guarded`); past ``srs.invalid_per_ip_per_hour``
  from one IP (this process), every further one closes its session after the tarpit's
  longest delay, whatever session the client opens.
- **DATA** (:meth:`SrsReturns.data`): a delivery report (RFC 3464) must name a recipient
  the address really forwarded to; mail that is not a report (qmail-style bounces, an
  auto-reply) must name one in its first 64 KiB (``550 5.7.1``).  Then it is scanned
  like any inbound mail: a virus is ``554 5.7.1``, spam ``550 5.7.1`` (an engine that
  cannot answer defers it with the listener's ``on_error`` rule).
- Every refusal is counted (``mailplane_srs_returns_total{outcome}``) and logged at most
  once a minute per kind (:class:`~mailplane.net.throttled_log.ThrottledLog`): one IP
  wrote 2.4 GB of log lines an hour before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP
from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.auth.send_quota import HourlyQuotas, Quota, QuotaExceeded
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.local import ScanFor
from mailplane.mail.dsn import names_any, reported_recipients
from mailplane.mail.message import MessageContext
from mailplane.mail.srs import Srs, SrsError
from mailplane.net.limits import client_key, in_networks, parse_networks
from mailplane.net.throttled_log import ThrottledLog
from mailplane.policy.model import AddressPolicy
from mailplane.smtp import replies
from mailplane.smtp.guarded import GuardedSMTP
from mailplane.smtp.replies import SmtpReply
from mailplane.storage import srs_forward_repo

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: Client IPs whose invalid SRS recipients are remembered at once (bounded memory).
MAX_TRACKED_CLIENTS = 4096
#: What a bounce is scanned for: every engine, as for a recipient with every check ON.
SCAN_POLICY = AddressPolicy(address="", address_id=0, contract_id=0, pop_account="",
                            status="active", virus_check=True, spam_judge=True)
#: The listener label of the scan's metrics and logs.
LISTENER = "mx"


@dataclass(frozen=True, slots=True)
class Accepted:
    """An SRS recipient accepted at RCPT, with the destinations it forwarded to."""

    address: str
    destinations: frozenset[str]


class SrsReturns:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session],
                 clock: Clock, *, srs: Srs, scan: ScanFor) -> None:
        self.settings = settings
        self.srs = srs
        self._scan = scan
        self._session_factory = session_factory
        self._clock = clock
        self._hourly = HourlyQuotas(session_factory, clock)
        self._exempt = parse_networks(settings.security.limit_exempt_networks)
        # client key -> (hour, invalid SRS recipients in it)
        self._invalid: dict[str, tuple[int, int]] = {}

    def is_srs_address(self, address: str) -> bool:
        return self.srs.is_srs_address(address)

    # --- RCPT ---------------------------------------------------------------------------

    async def rcpt(self, server: SMTP, *, address: str, mail_from: str,
                   peer_ip: str | None) -> Accepted | SmtpReply:
        """Accept ``address`` (an SRS address of our domain) or the refusal to answer."""
        address = address.strip().lower()
        client = client_key(peer_ip) if peer_ip else "unknown"
        if mail_from:
            return self._invalid_recipient(server, client, "not_null", address,
                                           replies.SRS_BOUNCES_ONLY)
        try:
            self.srs.reverse(address)
        except SrsError as exc:
            return self._invalid_recipient(server, client, "invalid", f"{address}: {exc}",
                                           replies.UNKNOWN_RECIPIENT)
        destinations = await asyncio.to_thread(self._emitted, address)
        if not destinations:
            return self._invalid_recipient(server, client, "not_emitted", address,
                                           replies.UNKNOWN_RECIPIENT)
        config = self.settings.srs
        quotas = [Quota("srs_returns_per_address_per_hour", f"srs:{address}",
                        config.returns_per_address_per_hour, 1)]
        if peer_ip and not in_networks(peer_ip, self._exempt):
            quotas.append(Quota("srs_returns_per_ip_per_hour", f"srs-ip:{client}",
                                config.returns_per_ip_per_hour, 1))
        try:
            await self._hourly.charge(quotas)
        except QuotaExceeded as exc:
            outcome = "rate_address" if exc.quota.key.startswith("srs:") else "rate_ip"
            metrics.SRS_RETURNS.labels(outcome).inc()
            metrics.LIMIT_REFUSALS.labels(LISTENER, exc.quota.name).inc()
            _throttled.warning(("srs", outcome), "bounce to SRS address %s from %s refused: "
                               "over %s", address, client, exc)
            return replies.SRS_RATE_LIMITED
        return Accepted(address, frozenset(destinations))

    def _emitted(self, address: str) -> set[str]:
        with self._session_factory() as session:
            return srs_forward_repo.destinations(session, srs_address=address,
                                                 now=self._clock.now())

    def _invalid_recipient(self, server: SMTP, client: str, outcome: str, detail: str,
                           reply: SmtpReply) -> SmtpReply:
        """Count, log (throttled) and refuse; a client past its budget of invalid SRS
        recipients gets its session closed after this reply."""
        metrics.SRS_RETURNS.labels(outcome).inc()
        _throttled.info(("srs", outcome), "refused SRS recipient from %s (%s): %s",
                        client, outcome, detail)
        if self._count_invalid(client) > self.settings.srs.invalid_per_ip_per_hour:
            metrics.LIMIT_REFUSALS.labels(LISTENER, "srs_invalid_per_ip").inc()
            if isinstance(server, GuardedSMTP):
                server.exhaust_error_budget()
        return reply

    def _count_invalid(self, client: str) -> int:
        hour = int(time.time() // 3600)
        seen_hour, count = self._invalid.get(client, (hour, 0))
        count = count + 1 if seen_hour == hour else 1
        if client not in self._invalid and len(self._invalid) >= MAX_TRACKED_CLIENTS:
            self._invalid = {k: v for k, v in self._invalid.items() if v[0] == hour}
            if len(self._invalid) >= MAX_TRACKED_CLIENTS:
                self._invalid.clear()
        self._invalid[client] = (hour, count)
        return count

    # --- DATA ---------------------------------------------------------------------------

    async def data(self, ctx: MessageContext,
                   accepted: Mapping[str, frozenset[str]]) -> SmtpReply | None:
        """The refusal for a message to ``accepted`` SRS recipients, or None to relay it.
        Raises :class:`~mailplane.delivery.local.DeliveryDeferred` when an engine cannot
        answer under ``on_error = tempfail`` (answered as for any message)."""
        if not accepted:
            return None
        reported = await asyncio.to_thread(reported_recipients, ctx.raw)
        for address, destinations in accepted.items():
            if reported is not None:
                is_ours = bool(reported & destinations)
            else:
                is_ours = names_any(ctx.raw, set(destinations))
            if not is_ours:
                metrics.SRS_RETURNS.labels("not_a_bounce").inc()
                _throttled.info(("srs", "not_a_bounce"), "refused mail to SRS address %s "
                                "from %s: not a report for a recipient it forwarded to",
                                address, ctx.peer_ip)
                return replies.SRS_NOT_A_BOUNCE
        scan = await self._scan(ctx, [SCAN_POLICY])
        if scan.virus is not None and scan.virus.infected:
            metrics.SRS_RETURNS.labels("virus").inc()
            _throttled.warning(("srs", "virus"), "refused a bounce to SRS address(es) %s "
                               "from %s: virus %s", ", ".join(accepted), ctx.peer_ip,
                               scan.virus.signature)
            return replies.INBOUND_VIRUS_REFUSED
        if scan.spam is not None and scan.spam.is_spam:
            metrics.SRS_RETURNS.labels("spam").inc()
            _throttled.info(("srs", "spam"), "refused a bounce to SRS address(es) %s from "
                            "%s: spam", ", ".join(accepted), ctx.peer_ip)
            return replies.SPAM_REFUSED
        metrics.SRS_RETURNS.labels("relayed").inc()
        return None

