"""One delivery attempt to one remote destination, within a time budget (issue 20).

A *destination* is what the per-destination limit counts (Postfix's nexthop): the
recipient domain, or the smarthost when one is configured.  :meth:`RemoteDelivery.attempt`
routes (MX lookup, at most ``mx_address_limit`` addresses) and hands the message to
:func:`~mailplane.outbound.smtp_transport.send_message`; its one caller,
:meth:`mailplane.outbound.lanes.Lanes._remote_attempt`, decides the bytes sent (DKIM
signing, SPEC §8b, goes there).

Everything the attempt does — DNS, connects, greetings, the transaction up to the final
"." — runs under one ``asyncio.timeout`` of ``attempt_budget_seconds``; a hostile
destination that answers every step just before its own timeout still costs one budget,
then a deferral.  Once the final "." is out the message is in the receiver's hands: the
budget is moved on to leave the reply its ``data_done_timeout_seconds`` (cutting that
wait short is what makes a receiver deliver a message we then send again, RFC 1047), so
one attempt holds its destination's slot for at most the two together.
A stopping worker shortens every budget in flight to its grace period
(:meth:`RemoteDelivery.cut`): the attempt ends with :class:`AttemptInterrupted`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable

import dns.asyncresolver

from mailplane import metrics
from mailplane.config.sections import OutboundConfig
from mailplane.outbound.mx_route import RouteError, mx_addresses
from mailplane.outbound.smtp_transport import (
    Candidate,
    Outcome,
    RecipientResult,
    TransportOptions,
    send_message,
)

log = logging.getLogger(__name__)

SMARTHOST = "smarthost"
#: How much later than the reply to the final "." may take the budget then ends: the
#: transport's own timeout decides that wait (a result with the host), not the budget.
END_OF_DATA_MARGIN = 1.0


class AttemptInterrupted(Exception):
    """The worker stopped while the attempt ran; nothing is known about its outcome."""


def destinations(recipients: Iterable[str], out: OutboundConfig) -> dict[str, list[str]]:
    """Remote recipients by destination: all to the smarthost, else by domain."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for recipient in recipients:
        key = SMARTHOST if out.smarthost else recipient.rpartition("@")[2].lower()
        grouped[key].append(recipient)
    return dict(grouped)


def no_host_answered(results: list[RecipientResult]) -> bool:
    """Every recipient is to be retried and no remote host said anything: the signal of
    a dead destination (DNS timeout, nothing connects, no greeting, budget used up)."""
    return bool(results) and all(r.outcome == "retry" and not r.remote_mta for r in results)


class RemoteDelivery:
    def __init__(self, out: OutboundConfig, *, local_hostname: str,
                 resolver: dns.asyncresolver.Resolver, mx_port: int) -> None:
        self.out = out
        self.local_hostname = local_hostname
        self.resolver = resolver
        self.mx_port = mx_port
        self._budgets: set[asyncio.Timeout] = set()
        self._cut_at: float | None = None

    async def attempt(self, destination: str, *, mail_from: str, recipients: list[str],
                      message: bytes) -> list[RecipientResult]:
        """Deliver ``message`` to ``recipients`` at ``destination`` once: a result per
        recipient.  ``message`` is exactly what is sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.out.attempt_budget_seconds
        if self._cut_at is not None:
            deadline = min(deadline, self._cut_at)
        budget = asyncio.timeout_at(deadline)
        try:
            async with budget:
                self._budgets.add(budget)
                try:
                    candidates = await self._candidates(destination)
                    if isinstance(candidates, str):
                        return self._route_failure(recipients, candidates)
                    return await send_message(
                        candidates, mail_from=mail_from, recipients=recipients,
                        message=message, options=self._options(
                            destination, on_end_of_data=lambda seconds: self._extend(
                                budget, seconds)),
                    )
                except RouteError as exc:
                    outcome: Outcome = "failed" if exc.permanent else "retry"
                    return [RecipientResult(r, outcome, exc.status, str(exc))
                            for r in recipients]
                finally:
                    self._budgets.discard(budget)
        except TimeoutError as exc:
            if not budget.expired():  # a step's own timeout that nothing below caught
                return [RecipientResult(r, "retry", "4.4.1", f"{destination}: {exc!r}")
                        for r in recipients]
            if self._cut_at is not None:
                raise AttemptInterrupted(destination) from None
            text = (f"{destination}: no result within the attempt budget of "
                    f"{self.out.attempt_budget_seconds:g}s")
            log.info("outbound: %s", text)
            metrics.OUTBOUND_DEFERRALS.labels("attempt_budget").inc()
            return [RecipientResult(r, "retry", "4.4.1", text) for r in recipients]

    def _extend(self, budget: asyncio.Timeout, seconds: float) -> None:
        """The final "." is out: the budget ends no sooner than ``seconds`` (and a margin,
        so the transport's own timeout is what ends the wait) from now — unless the
        worker is stopping (:meth:`cut` still applies)."""
        wanted = asyncio.get_running_loop().time() + seconds + END_OF_DATA_MARGIN
        if self._cut_at is not None:
            wanted = min(wanted, self._cut_at)
        when = budget.when()
        if when is not None and wanted > when:
            budget.reschedule(wanted)

    def cut(self, grace: float) -> None:
        """Stopping: every attempt in flight, and any that starts now, ends within
        ``grace`` seconds."""
        self._cut_at = asyncio.get_running_loop().time() + grace
        for budget in list(self._budgets):
            when = budget.when()
            if when is None or when > self._cut_at:
                budget.reschedule(self._cut_at)

    async def _candidates(self, destination: str) -> list[Candidate] | str:
        """Where to connect, or why there is nowhere (a temporary failure)."""
        out = self.out
        if destination == SMARTHOST:
            return [Candidate(out.smarthost, out.smarthost, out.smarthost_port)]
        found = await mx_addresses(self.resolver, destination, limit=out.mx_address_limit)
        if not found:
            return f"no address for the MX hosts of {destination}"
        return [Candidate(mx.host, mx.address, self.mx_port) for mx in found]

    @staticmethod
    def _route_failure(recipients: list[str], why: str) -> list[RecipientResult]:
        return [RecipientResult(r, "retry", "4.4.4", why) for r in recipients]

    def _options(self, destination: str, *,
                 on_end_of_data: Callable[[float], None] | None = None) -> TransportOptions:
        out = self.out
        smarthost = destination == SMARTHOST
        return TransportOptions(
            local_hostname=self.local_hostname,
            timeout=out.connect_timeout_seconds,
            connect_timeout=out.connect_timeout_seconds,
            session_limit=out.mx_session_limit,
            data_done_timeout=out.data_done_timeout_seconds,
            on_end_of_data=on_end_of_data,
            verify_certs=smarthost,
            username=out.smarthost_username if smarthost else "",
            password=out.smarthost_password.get_secret_value() if smarthost else "",
        )
