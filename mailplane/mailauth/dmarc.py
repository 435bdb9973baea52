"""DMARC (RFC 9989): policy discovery and identifier alignment by the DNS tree walk.

No public suffix list: where an organisation ends is read from the ``_dmarc`` records
themselves (RFC 9989 §4.10), so a list that is a year old on some node can never make two
nodes disagree.  The walk is bounded — at most 8 queries per name (a name of 8 or more
labels jumps to its last 7) — and every lookup of one message is remembered, so the walks
for the author domain, the SPF domain and each DKIM ``d=`` share their queries.

The result for one author domain:

- no DMARC policy record anywhere on its walk → ``none`` (DMARC does not apply);
- an SPF pass or a DKIM pass whose domain is aligned with it (strict: the same name;
  relaxed: the same organisational domain) → ``pass``;
- otherwise ``temperror`` when a check that *could* have given an aligned pass did not
  answer (our DNS trouble never makes a forgery of someone else's domain out of their
  mail), else ``fail``.

A ``From:`` with several domains is judged on each (at most :data:`MAX_AUTHOR_DOMAINS`)
and the worst result counts: putting a harmless address before a forged one changes
nothing.  The policy is ``p=`` for the author domain's own record, else ``sp=`` — or
``np=`` when the author domain does not exist (§3.2.13) — of the organisational or public
suffix domain's record.  ``t=y`` (testing; ``pct=0`` in an RFC 7489 record, Appendix A.6)
is kept beside the policy: the filters apply one level less (§4.7).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from mailplane.mail.auth_results import DkimSignatureResult, DmarcPolicy, DmarcResult
from mailplane.mailauth.dns import Deadline, DnsClient, DnsTempError

#: RFC 9989 §4.10: a walk never makes more than this many queries.
MAX_WALK_QUERIES = 8
#: Distinct ``From:`` domains judged in one message; more is ``permerror`` (each costs a
#: walk of up to 8 queries, for a sender who chose them).
MAX_AUTHOR_DOMAINS = 5

_POLICIES: dict[str, DmarcPolicy] = {"none": "none", "quarantine": "quarantine",
                                     "reject": "reject"}
#: Worst first: the result that counts when a From has several domains.
_SEVERITY: tuple[DmarcResult, ...] = ("fail", "temperror", "permerror", "pass", "none")


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    policy: DmarcPolicy
    subdomain_policy: DmarcPolicy | None = None
    nonexistent_policy: DmarcPolicy | None = None
    psd: Literal["y", "n", "u"] = "u"
    strict_dkim: bool = False
    strict_spf: bool = False
    testing: bool = False


@dataclass(frozen=True, slots=True)
class DmarcOutcome:
    result: DmarcResult
    #: The author domain judged (the worst one when a From has several).
    domain: str = ""
    policy: DmarcPolicy = "none"
    testing: bool = False
    reason: str = ""


@functools.lru_cache(maxsize=4096)
def parse_record(text: str) -> DmarcRecord | None:
    """A DMARC policy record (RFC 9989 §4.7), or None when ``text`` is not one (or its
    policy tags are invalid and it has no reporting address: §4.10.1, no DMARC)."""
    tags: dict[str, str] = {}
    for index, part in enumerate(text.split(";")):
        name, eq, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if index == 0:
            if name != "v" or value != "DMARC1" or not eq:
                return None
            continue
        if eq and name and name not in tags:
            tags[name] = value
    policies: dict[str, DmarcPolicy | None] = {}
    invalid = False
    for tag in ("p", "sp", "np"):
        given = tags.get(tag)
        if given is None:
            policies[tag] = None
            continue
        policy = _POLICIES.get(given.lower())
        invalid = invalid or policy is None
        policies[tag] = policy
    if invalid:
        if "mailto:" not in tags.get("rua", "").lower():
            return None
        policies = {"p": "none", "sp": None, "np": None}  # §4.10.1: act as p=none
    psd = tags.get("psd", "u").lower()
    testing = tags.get("t", "").lower() == "y" or ("t" not in tags and tags.get("pct") == "0")
    return DmarcRecord(
        policy=policies["p"] or "none",
        subdomain_policy=policies["sp"],
        nonexistent_policy=policies["np"],
        psd=psd if psd in ("y", "n") else "u",  # type: ignore[arg-type]
        strict_dkim=tags.get("adkim", "r").lower() == "s",
        strict_spf=tags.get("aspf", "r").lower() == "s",
        testing=testing,
    )


def walk_targets(domain: str) -> list[str]:
    """The names a tree walk from ``domain`` queries, in order (RFC 9989 §4.10)."""
    labels = domain.split(".")
    targets = [domain]
    rest = labels[-7:] if len(labels) >= 8 else labels[1:]
    while rest:
        targets.append(".".join(rest))
        rest = rest[1:]
    return targets[:MAX_WALK_QUERIES]


def _one_below(start: str, ancestor: str) -> str:
    """The name one label below ``ancestor`` on the way to ``start``."""
    depth = ancestor.count(".") + 2
    return ".".join(start.split(".")[-depth:])


class DmarcEvaluator:
    """The DMARC state of one message: its ``_dmarc`` lookups, remembered."""

    def __init__(self, dns: DnsClient, deadline: Deadline) -> None:
        self._dns = dns
        self._deadline = deadline
        self._records: dict[str, DmarcRecord | None] = {}

    async def record_at(self, domain: str) -> DmarcRecord | None:
        """The one valid record at ``_dmarc.<domain>`` (several valid ones: none, §4.10
        step 2); raises :class:`DnsTempError`.  Answers are remembered for the message."""
        if domain not in self._records:
            self._records[domain] = await self._lookup(domain)
        return self._records[domain]

    async def _lookup(self, domain: str) -> DmarcRecord | None:
        texts, _exists = await self._dns.txt(f"_dmarc.{domain}", self._deadline)
        records = [r for r in (parse_record(t.decode("utf-8", "replace")) for t in texts)
                   if r is not None]
        return records[0] if len(records) == 1 else None

    async def walk(self, start: str) -> list[tuple[str, DmarcRecord]]:
        """Records found from ``start`` upwards, stopping at one with ``psd=y|n``."""
        found: list[tuple[str, DmarcRecord]] = []
        for target in walk_targets(start):
            record = await self.record_at(target)
            if record is None:
                continue
            found.append((target, record))
            if record.psd in ("y", "n"):
                break
        return found

    async def organisational_domain(self, domain: str) -> str:
        """RFC 9989 §4.10.2."""
        return _select_organisational(domain, await self.walk(domain))

    async def aligned(self, identifier: str, author: str, author_org: str, *,
                      strict: bool) -> bool:
        """Whether an authenticated ``identifier`` is aligned with ``author``."""
        identifier = identifier.lower().rstrip(".")
        if identifier == author:
            return True
        if strict or not (identifier == author_org or identifier.endswith("." + author_org)):
            return False  # an organisational domain is always the name or an ancestor
        return await self.organisational_domain(identifier) == author_org

    async def author_exists(self, domain: str) -> bool:
        """§3.2.13: a name with an A, AAAA or MX record (NODATA for all three: no)."""
        answers = await asyncio.gather(*(self._dns.query(domain, rdtype, self._deadline)
                                         for rdtype in ("A", "AAAA", "MX")))
        return any(answer.records for answer in answers)

    async def evaluate_one(self, author: str, *, spf: str, spf_domain: str,
                           dkim: Sequence[DkimSignatureResult]) -> DmarcOutcome:
        try:
            found = await self.walk(author)
        except DnsTempError as exc:
            return DmarcOutcome("temperror", author, reason=str(exc))
        organisational = _select_organisational(author, found)
        applied = _applied_record(author, organisational, found)
        if applied is None:
            return DmarcOutcome("none", author, reason="no DMARC record")
        applied_at, record = applied
        outcome = await self._alignment(author, organisational, record, spf=spf,
                                        spf_domain=spf_domain, dkim=dkim)
        policy = record.policy
        if applied_at != author:
            policy = record.subdomain_policy or record.policy
            if outcome == "fail" and record.nonexistent_policy is not None:
                try:
                    if not await self.author_exists(author):
                        policy = record.nonexistent_policy
                except DnsTempError:
                    pass  # the subdomain policy stands
        return DmarcOutcome(outcome, author, policy, record.testing)

    async def _alignment(self, author: str, organisational: str, record: DmarcRecord, *,
                         spf: str, spf_domain: str,
                         dkim: Sequence[DkimSignatureResult]) -> DmarcResult:
        unknown = False
        candidates: list[tuple[str, str, bool]] = [(spf, spf_domain, record.strict_spf)]
        candidates += [(sig.result, sig.domain, record.strict_dkim) for sig in dkim]
        for result, identifier, strict in candidates:
            if result not in ("pass", "temperror") or not identifier:
                continue
            try:
                aligned = await self.aligned(identifier, author, organisational,
                                             strict=strict)
            except DnsTempError:
                unknown = True
                continue
            if aligned and result == "pass":
                return "pass"
            unknown = unknown or aligned
        return "temperror" if unknown else "fail"

    async def evaluate(self, authors: Sequence[str], *, spf: str, spf_domain: str,
                       dkim: Sequence[DkimSignatureResult]) -> DmarcOutcome:
        """The worst outcome over the message's author domains."""
        distinct = list(dict.fromkeys(a.lower().rstrip(".") for a in authors if a))
        if not distinct:
            return DmarcOutcome("none", reason="no author domain")
        if len(distinct) > MAX_AUTHOR_DOMAINS:
            return DmarcOutcome("permerror", distinct[0], reason="too many author domains")
        if len(distinct) == 1:  # nearly all mail: no tasks for one walk
            return await self.evaluate_one(distinct[0], spf=spf, spf_domain=spf_domain,
                                           dkim=dkim)
        outcomes = await asyncio.gather(*(
            self.evaluate_one(author, spf=spf, spf_domain=spf_domain, dkim=dkim)
            for author in distinct))
        return min(outcomes, key=lambda o: _SEVERITY.index(o.result))


def _select_organisational(start: str, found: list[tuple[str, DmarcRecord]]) -> str:
    for domain, record in found:
        if record.psd == "n":
            return domain
    for domain, record in found:
        if record.psd == "y" and domain != start:
            return _one_below(start, domain)
    return found[-1][0] if found else start


def _applied_record(author: str, organisational: str,
                    found: list[tuple[str, DmarcRecord]]) -> tuple[str, DmarcRecord] | None:
    """§4.10.1: the author domain's record, else its organisational domain's, else its
    public suffix domain's."""
    by_domain = dict(found)
    for domain in (author, organisational):
        if domain in by_domain:
            return domain, by_domain[domain]
    for domain, record in found:
        if record.psd == "y":
            return domain, record
    return None
