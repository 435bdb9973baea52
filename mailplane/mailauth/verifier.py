"""What the MX calls: the checks of one transaction, started as early as it allows.

- :meth:`InboundVerifier.begin` — at the first accepted RCPT (never at MAIL FROM: a
  stranger's MAIL FROM alone must not make us query the DNS of a domain they chose): the
  SPF check (it needs only the client IP, HELO and MAIL FROM) starts as a task.
- :meth:`PendingChecks.finish` — at the end of DATA: DKIM keys, ARC keys and the DMARC
  policy walk start at once and run concurrently; then DMARC alignment, the hosted-domain
  claim, and the :class:`~mailplane.mail.auth_results.AuthResults`.

**One time budget** (``[authentication] time_budget_seconds``): the SPF task stops at most
that long after it started, and everything started at DATA stops at most that long after
DATA ended — so the ``250`` waits at most one budget for authentication.  A check that did
not finish is ``temperror``: a message is never deferred for DNS.

Every task is kept (:attr:`InboundVerifier.tasks`): the transaction's checks are
cancelled when its envelope goes away (RSET, a new HELO, the connection closing — a
``weakref.finalize`` on the envelope, so the MX needs no hook for it) and all of them when
the listener stops (:meth:`InboundVerifier.aclose`).

With ``[authentication] nameserver = "none"`` (the offline demo) nothing is looked up and
the results say so at once (``AuthResults.evaluated`` is False).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from mailplane import metrics
from mailplane.config.settings import Settings
from mailplane.mail.auth_results import (
    AuthResults,
    HostedClaimResult,
)
from mailplane.mail.message import MessageContext
from mailplane.mailauth import dkim, header
from mailplane.mailauth.dmarc import (
    MAX_AUTHOR_DOMAINS,
    DmarcEvaluator,
    DmarcOutcome,
    walk_targets,
)
from mailplane.mailauth.dns import Deadline, DnsClient, DnsTempError, make_resolver
from mailplane.mailauth.spf import SpfOutcome, check_host

log = logging.getLogger(__name__)

T = TypeVar("T")
_SPF_LATE = SpfOutcome("temperror", "", "time budget spent")
_DMARC_LATE = DmarcOutcome("temperror")
#: How long past the deadline a check may take to hand back what it has (CPU work
#: already under way in a thread, a lookup returning); then it is cancelled.
GRACE_SECONDS = 0.25


class InboundVerifier:
    """The node's sender authentication: one resolver (and its cache) for every session."""

    def __init__(self, settings: Settings,
                 hosted: Callable[[str], bool] | None = None) -> None:
        """``hosted(domain)``: whether the platform hosts ``domain`` (the policy cache);
        without it, the base domains and their subdomains are hosted."""
        section = settings.authentication
        self.base_domains = tuple(settings.base_domains)
        self.hosted = hosted or self._under_base_domain
        self.authserv_id = header.node_authserv_id(settings)
        self.budget = section.time_budget_seconds
        self.max_dkim_signatures = section.max_dkim_signatures
        nameserver = section.nameserver_address(settings.outbound)
        self.enabled = nameserver != "none"
        self.dns = DnsClient(make_resolver(nameserver if isinstance(nameserver, tuple)
                                           else None) if self.enabled else None)
        self.tasks: set[asyncio.Task[Any]] = set()

    def _under_base_domain(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        return any(domain == b or domain.endswith("." + b) for b in self.base_domains)

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task that is kept until it is done (and cancelled by :meth:`aclose`)."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def begin(self, envelope: object, *, peer_ip: str | None, helo: str | None,
              mail_from: str) -> PendingChecks:
        """Start what can start before DATA; cancelled when ``envelope`` goes away."""
        checks = PendingChecks(self, peer_ip=peer_ip or "", helo=helo or "",
                               mail_from=mail_from)
        weakref.finalize(envelope, checks.cancel)
        return checks

    def stamp(self, raw: bytes, auth: AuthResults, ctx: MessageContext) -> bytes:
        """``raw`` with forged headers of our authserv-id removed and ours on top."""
        value = header.build(self.authserv_id, auth, mail_from=ctx.mail_from,
                             helo=ctx.helo or "")
        return header.stamp(raw, value, self.authserv_id)

    async def aclose(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class PendingChecks:
    """The checks of one transaction."""

    def __init__(self, verifier: InboundVerifier, *, peer_ip: str, helo: str,
                 mail_from: str) -> None:
        self._verifier = verifier
        self._mail_from = mail_from
        self._helo = helo
        self._spf: asyncio.Task[SpfOutcome] | None = None
        self._running: list[asyncio.Task[Any]] = []
        if verifier.enabled:
            deadline = Deadline(verifier.budget)
            self._spf = self._start(check_host(verifier.dns, deadline, peer_ip=peer_ip,
                                               mail_from=mail_from, helo=helo))

    def _start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = self._verifier.spawn(work)
        self._running.append(task)
        return task

    def cancel(self) -> None:
        for task in self._running:
            task.cancel()

    async def finish(self, ctx: MessageContext) -> AuthResults:
        """Every result for the message ``ctx`` (its raw bytes as received)."""
        verifier = self._verifier
        sender = ctx.envelope_sender
        authors = [a.rpartition("@")[2].rstrip(".") for a in ctx.header_from_addresses]
        claim = _hosted_claim(verifier.hosted, sender, authors)
        if not verifier.enabled or self._spf is None:
            return AuthResults(spf_domain=sender.rpartition("@")[2] or self._helo,
                               from_domain=authors[0] if authors else "",
                               evaluated=False, hosted_claim=claim)
        deadline = Deadline(verifier.budget)
        dmarc = DmarcEvaluator(verifier.dns, deadline)
        walked = list(dict.fromkeys(authors))[:MAX_AUTHOR_DOMAINS]
        prepared = dkim.read(ctx.raw, max_signatures=verifier.max_dkim_signatures)
        names = [*prepared.wanted, *(f"_dmarc.{target}" for author in walked
                                     for target in walk_targets(author))]
        fetching: asyncio.Task[dkim.Prepared] | None = None
        if all(verifier.dns.cached(name, "TXT") for name in names):
            # Every answer is in the cache: nothing waits, so no task is worth its cost.
            await dkim.fetch(verifier.dns, deadline, prepared)
        elif prepared.wanted:
            # The keys are fetched in a task while this one walks the DMARC tree.
            fetching = self._start(dkim.fetch(verifier.dns, deadline, prepared))
        for author in walked:  # answers remembered for the evaluation below
            await _in_time(dmarc.walk(author), None, None)
        await _settle([self._spf] if fetching is None else [self._spf, fetching], deadline)
        spf = _outcome(self._spf, _SPF_LATE)
        if fetching is not None and _outcome(fetching, None) is None:
            dkim.fetch_failed(prepared)  # what did not arrive in time is temperror
        if dkim.verify_inline(ctx.raw, prepared):
            signatures, arc = dkim.verify_now(ctx.raw, prepared)
        else:
            signatures, arc = await _in_time(dkim.verify(ctx.raw, prepared), deadline,
                                             ((), "fail"))
        # Every lookup of the evaluation is bounded by the deadline itself.
        outcome = await _in_time(
            dmarc.evaluate(authors, spf=spf.result, spf_domain=spf.domain, dkim=signatures),
            None, _DMARC_LATE)
        if outcome is _DMARC_LATE:
            outcome = DmarcOutcome("temperror", authors[0] if authors else "")
        auth = AuthResults(spf=spf.result, spf_domain=spf.domain, dkim=signatures,
                           dmarc=outcome.result, dmarc_policy=outcome.policy,
                           from_domain=outcome.domain or (authors[0] if authors else ""),
                           arc=arc, dmarc_testing=outcome.testing, hosted_claim=claim)
        if claim:
            auth = _with_claim_result(auth, self._claimed(sender, authors),
                                      verifier.base_domains)
        _count(auth)
        return auth

    def _claimed(self, sender: str, authors: Sequence[str]) -> list[str]:
        hosted = self._verifier.hosted
        domains = [a for a in authors if hosted(a)]
        envelope = sender.rpartition("@")[2]
        if envelope and hosted(envelope):
            domains.append(envelope)
        return list(dict.fromkeys(d.lower() for d in domains))


async def _settle(tasks: Sequence[asyncio.Task[Any]], deadline: Deadline) -> None:
    """Wait for ``tasks`` until the deadline; cancel those still running then."""
    pending = [task for task in tasks if not task.done()]
    if pending:
        _done, late = await asyncio.wait(pending,
                                         timeout=max(0.0, deadline.remaining()) + GRACE_SECONDS)
        for task in late:
            task.cancel()


def _outcome(task: asyncio.Task[T], late: T) -> T:
    """A settled task's result, or ``late`` when it did not finish in time or failed (a
    check's bug must never cost the message)."""
    if not task.done() or task.cancelled():
        return late
    error = task.exception()
    if error is None:
        return task.result()
    if not isinstance(error, DnsTempError):
        log.error("sender authentication check failed; counted as temperror",
                  exc_info=error)
    return late


async def _in_time(work: Coroutine[Any, Any, T], deadline: Deadline | None, late: T) -> T:
    """``work`` awaited (no task: it runs in this one), within ``deadline`` if given —
    work whose every wait is a lookup is bounded by the lookups' own deadline."""
    try:
        if deadline is None:
            return await work
        async with asyncio.timeout_at(deadline.at + GRACE_SECONDS):
            return await work
    except (TimeoutError, DnsTempError):
        return late
    except Exception:
        log.exception("sender authentication check failed; counted as temperror")
        return late


_counters: dict[tuple[str, str], Any] = {}


def _count(auth: AuthResults) -> None:
    results: list[tuple[str, str]] = [("spf", auth.spf), ("dmarc", auth.dmarc), ("arc", auth.arc)]
    results += [("dkim", signature.result) for signature in auth.dkim]
    for key in results:
        counter = _counters.get(key)
        if counter is None:
            counter = _counters[key] = metrics.SENDER_AUTHENTICATION.labels(*key)
        counter.inc()


def _hosted_claim(hosted: Callable[[str], bool], sender: str, authors: Sequence[str]) -> str:
    for author in authors:
        if hosted(author):
            return author.lower()
    envelope = sender.rpartition("@")[2]
    return envelope.lower() if envelope and hosted(envelope) else ""


def _organisation(domain: str, base_domains: Sequence[str]) -> str:
    """A hosted domain's organisational domain: the base domain it is under (itself for
    a hosted domain outside every base domain)."""
    domain = domain.lower().rstrip(".")
    for base in base_domains:
        if domain == base or domain.endswith("." + base):
            return base
    return domain


def _with_claim_result(auth: AuthResults, claimed: Sequence[str],
                       base_domains: Sequence[str]) -> AuthResults:
    """SPEC §8b: every hosted domain the message claims must be proven by SPF or DKIM
    for a domain of the same organisation (relaxed alignment, the base domain being the
    organisational domain)."""
    result: HostedClaimResult = "pass"
    failing = ""
    for domain in claimed:
        org = _organisation(domain, base_domains)
        proofs: list[tuple[str, str]] = [(auth.spf, auth.spf_domain)]
        proofs += [(sig.result, sig.domain) for sig in auth.dkim]
        related = [outcome for outcome, identifier in proofs
                   if _organisation(identifier, base_domains) == org]
        if "pass" in related:
            continue
        if "temperror" in related and result == "pass":
            result, failing = "temperror", domain
        elif "temperror" not in related:
            result, failing = "fail", domain
            break
    return dataclasses.replace(auth, hosted_claim_result=result,
                               hosted_claim=failing or auth.hosted_claim)
