"""Forwarding (SPEC §5, L4396-4523): every part of the rule in one place.  (Over 300
lines: its input, decision, copy and one-step expansion are one rule with one home.)

- **Input** (:func:`clean_destinations`): at most :data:`MAX_DESTINATIONS`, never the
  address itself, never twice (L4409); all blank = forwarding OFF.
- **Decision** (:class:`ForwardingStep`): only mail that reached the inbox is forwarded —
  never quarantined mail (L4408) — while virus-cleaned mail (the report with the
  neutralised original) is.
- **The copy** (:func:`plan_forward`): the message *exactly as received* with only our
  ``Delivered-To`` and ``Received`` on top — no ``[spam]`` tag, no re-serialisation, so a
  DKIM signature still verifies downstream.  For a destination outside the platform the
  envelope sender is SRS-rewritten, so SPF passes there and a bounce comes back to our SRS
  address; a hosted destination keeps the original sender (:func:`split_hosted`): the
  copy never leaves the platform, so SPF is not asked, and a bounce goes straight back.
- **Loops** (:func:`is_loop`): a message already carrying ``Delivered-To: <address>`` or
  more than ``max_hops`` ``Received`` lines is not forwarded again; the caller then keeps
  the inbox copy even with keep-copy OFF, so a loop never loses a message.  Loops through
  outside hosts end this way.
- **One message, one expansion** (:class:`Expansion`, :func:`forward_effects`,
  :func:`kept_copies`; issue 20): the hosted destinations are not queued to run the
  pipeline again and forward again, which multiplied one message into a hundred
  deliveries.  The whole graph of hosted forwards is expanded in the delivery that
  received the message, with a visited set (Postfix's virtual alias expansion): each hosted
  mailbox gets at most one copy and each remote destination at most one, however the
  addresses forward to each other.  Each hosted address's own pipeline still decides for
  its own copy (quarantined there = forwarded no further).  With keep-copy OFF the inbox
  copy is dropped only when the message really goes on from there; in a circle of
  forwards with no way out, the first address of the circle keeps it.
- **At the border**: mail judged spam (tagged) is never forwarded outside the platform;
  remote forwards count against the address's hourly limit
  (:mod:`mailplane.delivery.forward_gate`; ``[forwarding]``); a DSN of a failed forward
  goes only to a sender that authenticated (:func:`sender_may_get_bounces`); a forward
  that fails for good with keep-copy OFF comes back to the inbox (``return_to``).
- **Input, at the border too** (:func:`clean_destinations`): a hosted destination must
  exist; a remote one whose domain does not exist (NXDOMAIN, null MX) is refused.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr

from mailplane import metrics
from mailplane.filters.base import RecipientDecision
from mailplane.mail.address import email_rule_violation
from mailplane.mail.auth_results import AuthResults
from mailplane.mail.message import MessageContext
from mailplane.mail.rewrite import header_line
from mailplane.mail.srs import Srs
from mailplane.net.throttled_log import ThrottledLog
from mailplane.policy.model import AddressPolicy
from mailplane.rules import RuleViolation

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: SPEC §5, L4400.
MAX_DESTINATIONS = 3


# --- input (the API) ------------------------------------------------------------------


def normalise_destination(raw: str) -> str:
    """Surrounding spaces removed and the domain lower-cased; the local part is kept as
    typed (RFC 5321 §2.4) but compared case-insensitively."""
    local, at, domain = raw.strip().rpartition("@")
    return f"{local}{at}{domain.lower()}" if at else raw.strip()


def destination_domain(destination: str) -> str:
    return normalise_destination(destination).rpartition("@")[2].lower()


def clean_destinations(
    raw: Sequence[str], own_address: str, *,
    hosted: Callable[[str], bool] | None = None,
    hosted_exists: Callable[[str], bool] | None = None,
    missing_domains: Collection[str] = (),
) -> list[str]:
    """The destinations as stored; :class:`RuleViolation` names the first bad field.

    With ``hosted`` and ``hosted_exists`` (the API), a destination in a hosted domain
    must be an existing address — with keep-copy OFF, mail forwarded to a typo was
    bounced and lost from the inbox (issue 22).  ``missing_domains`` are domains that
    DNS said do not exist (:func:`mailplane.net.domain_lookup.missing_domains`): a
    destination there could never be delivered (issue 20).  A domain DNS could not answer
    for is not in it: offline, the destination is accepted."""
    if len(raw) > MAX_DESTINATIONS:
        raise RuleViolation("destinations", "at most {limit} forwarding destinations",
                            limit=MAX_DESTINATIONS)
    cleaned: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        destination = normalise_destination(item)
        if not destination:
            continue  # a blank field of the form: fewer destinations, or forwarding OFF
        field = f"destinations[{index}]"
        problem = email_rule_violation(destination)
        if problem:
            raise RuleViolation(field, problem)
        folded = destination.lower()
        if folded == own_address.lower():
            raise RuleViolation(field, "cannot forward to the address itself")
        if folded in seen:
            raise RuleViolation(field, "{destination} is entered twice",
                                destination=destination)
        domain = destination.rpartition("@")[2]
        if hosted is not None and hosted(domain):
            if hosted_exists is not None and not hosted_exists(destination):
                raise RuleViolation(field, "{destination} is not a registered address",
                                    destination=destination)
        elif domain in missing_domains:
            raise RuleViolation(field, "the domain {domain} does not exist", domain=domain)
        seen.add(folded)
        cleaned.append(destination)
    return cleaned


# --- decision (the pipeline) ----------------------------------------------------------


def targets(address: str, destinations: Sequence[str]) -> list[str]:
    """What a stored list forwards to: at most 3, no duplicates, never the address itself
    (the API already refuses these; a row edited by hand must not break the rule)."""
    seen: set[str] = {address.lower()}
    result: list[str] = []
    for destination in destinations:
        key = destination.strip().lower()
        if key and key not in seen:
            seen.add(key)
            result.append(destination.strip())
    return result[:MAX_DESTINATIONS]


class ForwardingStep:
    """A delivery step: acts on the merged decision (pipeline.AFTER_DECISION)."""

    name = "forwarding"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, decision: RecipientDecision,
        *, require_address_in_recipients: bool,
    ) -> RecipientDecision:
        if decision.disposition != "inbox" or not policy.forward_destinations:
            return decision
        forward_to = tuple(targets(policy.address, policy.forward_destinations))
        if not forward_to:
            return decision
        return dataclasses.replace(
            decision, forward_to=forward_to, keep_copy=policy.forward_keep_copy,
            hits=(*decision.hits, self.name),
        )


# --- the forwarded copy ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForwardPlan:
    """One outbound job: queue it with ``kind="forward"``."""

    mail_from: str
    recipients: list[str]
    message: bytes


def _addr(value: str) -> str:
    return parseaddr(value)[1].strip().lower() or value.strip().strip("<>").lower()


def is_loop(message_headers: Message, address: str, max_hops: int) -> bool:
    """True when forwarding again would loop: the message already carries our
    ``Delivered-To: <address>``, or more than ``max_hops`` ``Received`` headers (RFC 5321
    §6.3 hop counting).  A looping message is stored, not forwarded, and not bounced."""
    wanted = address.lower()
    for value in message_headers.get_all("Delivered-To", []):
        if _addr(str(value)) == wanted:
            return True
    return len(message_headers.get_all("Received", [])) > max_hops


def sender_may_get_bounces(auth: AuthResults | None) -> bool:
    """SPEC §5: a DSN of a failed forward, and a bounce relayed through our SRS address,
    go only to a sender that authenticated at our MX (SPF pass or an aligned DKIM pass);
    a forged sender gets no backscatter.  ``None``: the MX evaluated nothing because the
    mail did not come from the Internet (submission after AUTH, the queue's local
    transport) — its sender is one of ours."""
    return auth is None or auth.sender_authenticated


def forwarded_copy(raw: bytes, *, address: str, received: str) -> bytes:
    """``raw`` unchanged below our ``Delivered-To`` and ``Received`` lines."""
    return header_line("Delivered-To", address) + header_line("Received", received) + raw


def plan_forward(
    *,
    raw: bytes,
    headers: Message,
    address: str,
    destinations: Sequence[str],
    envelope_sender: str,
    received: str,
    srs: Srs,
    max_hops: int,
) -> ForwardPlan | None:
    """The forward job for one inbox delivery, or None (no destinations, or a loop).

    ``received`` is the value of the Received header the MX writes for this hop (folded
    with CRLF + tab).  Callers must store the message in the inbox when this returns None
    even if keep-copy is OFF, or a looping message would be lost.
    """
    recipients = targets(address, destinations)
    if not recipients:
        return None
    if is_loop(headers, address, max_hops):
        log.warning("forwarding loop for %s: not forwarded (kept in the mailbox)", address)
        return None
    return ForwardPlan(
        mail_from=srs.forward(envelope_sender),
        recipients=recipients,
        message=forwarded_copy(raw, address=address, received=received),
    )


def return_to_sender(srs: Srs, *, srs_recipient: str, envelope_sender: str,
                     raw: bytes) -> ForwardPlan:
    """Mail (normally a bounce) that arrived for one of our SRS addresses, sent on to the
    original sender (SPEC §5, L4407).  ``srs.reverse`` raises ``SrsError`` for a forged or
    expired address — the MX checks it at RCPT time and answers 550 there."""
    return ForwardPlan(mail_from=srs.forward(envelope_sender),
                       recipients=[srs.reverse(srs_recipient)], message=raw)


def split_hosted(plan: ForwardPlan, *, envelope_sender: str,
                 hosted: Callable[[str], bool]) -> list[ForwardPlan]:
    """``plan`` as one job per route: its hosted recipients with the original envelope
    sender (delivered on the platform by the queue's local transport: no SRS, which only
    serves SPF at a foreign destination), the others as planned (SRS-rewritten).  The
    message is the same for both."""
    local = [r for r in plan.recipients if hosted(r)]
    if not local:
        return [plan]
    remote = [r for r in plan.recipients if not hosted(r)]
    plans = [ForwardPlan(mail_from=envelope_sender, recipients=local, message=plan.message)]
    if remote:
        plans.append(ForwardPlan(mail_from=plan.mail_from, recipients=remote,
                                 message=plan.message))
    return plans


# --- one message, one expansion (issue 20) --------------------------------------------


class Expansion:
    """The one expansion of one message through the forwarding graph: who has a copy.

    ``lookup`` is the node's policy snapshot; ``hosted`` says whether an address is in a
    domain of ours.
    The message's own recipients are visited from the start; forwarding reaches at most
    ``limit`` hosted addresses more (Postfix ``virtual_alias_expansion_limit``)."""

    def __init__(self, *, lookup: Callable[[str], AddressPolicy | None],
                 hosted: Callable[[str], bool], seen: Iterable[str], limit: int) -> None:
        self.lookup = lookup
        self.hosted = hosted
        self.visited: set[str] = {address.lower() for address in seen}
        self.remote: set[str] = set()
        self.limit = len(self.visited) + limit


@dataclass(frozen=True, slots=True)
class HostedCopy:
    """A hosted destination reached in this expansion, delivered with the message now
    through its own pipeline: ``message`` is the forwarder's copy."""

    address: str
    policy: AddressPolicy
    message: bytes


@dataclass(frozen=True, slots=True)
class ForwardEffects:
    """What one address's forwarding does with one message — its one home.

    ``remote`` leaves the platform (SRS sender; counted against the address's hourly
    limit); ``queued`` goes to hosted destinations the node does not know yet (the queue's
    local transport delivers or bounces them); ``hosted`` are delivered now; ``revisits``
    are hosted destinations that have their copy already.  ``keep_copy``: whether this
    address keeps its inbox copy as far as its own step can tell — :func:`kept_copies`
    settles it for the whole graph."""

    remote: ForwardPlan | None = None
    queued: ForwardPlan | None = None
    hosted: tuple[HostedCopy, ...] = ()
    revisits: tuple[str, ...] = ()
    keep_copy: bool = True

    @property
    def goes_on(self) -> bool:
        """Whether the message goes anywhere from here."""
        return bool(self.remote or self.queued or self.hosted or self.revisits)


NO_FORWARD = ForwardEffects()


def forward_effects(
    ctx: MessageContext, address: str, decision: RecipientDecision, expansion: Expansion, *,
    source: bytes, received: str, srs: Srs, max_hops: int,
) -> ForwardEffects:
    """The forwards of ``address`` for this message (inbox mail only: the pipeline gives
    quarantined mail no ``forward_to``).  ``source`` is what is forwarded: the message as
    received, or the virus report in its place."""
    if not decision.forward_to:
        return NO_FORWARD
    if is_loop(ctx.headers, address, max_hops):
        metrics.FORWARDS_WITHHELD.labels("loop").inc()
        _throttled.warning(("loop",), "forwarding loop for %s: not forwarded (kept in the "
                           "mailbox)", address)
        return NO_FORWARD
    copy = forwarded_copy(source, address=address, received=received)
    remote: list[str] = []
    queued: list[str] = []
    hosted: list[HostedCopy] = []
    revisits: list[str] = []
    for destination in decision.forward_to:
        key = destination.lower()
        if expansion.hosted(destination):
            if key in expansion.visited:
                revisits.append(key)
                continue
            if len(expansion.visited) >= expansion.limit:
                metrics.FORWARDS_WITHHELD.labels("expansion_limit").inc()
                _throttled.warning(("expansion_limit",), "forwarding of %s to %s: more "
                                   "than %d addresses reached by one message; not "
                                   "forwarded", address, destination, expansion.limit)
                continue
            expansion.visited.add(key)
            policy = expansion.lookup(destination)
            if policy is None or policy.status == "deleted":
                queued.append(destination)
            else:
                hosted.append(HostedCopy(policy.address, policy, copy))
        elif decision.tag_subject:
            # Judged spam: never sent outside the platform (issue 20, SPEC §5).
            metrics.FORWARDS_WITHHELD.labels("spam").inc()
        elif key not in expansion.remote:
            expansion.remote.add(key)
            remote.append(destination)
    sender = ctx.envelope_sender
    effects = ForwardEffects(
        remote=ForwardPlan(srs.forward(sender), remote, copy) if remote else None,
        queued=ForwardPlan(sender, queued, copy) if queued else None,
        hosted=tuple(hosted), revisits=tuple(revisits))
    return dataclasses.replace(effects, keep_copy=decision.keep_copy or not effects.goes_on)


@dataclass(slots=True)
class GraphNode:
    """One address reached by the message, as :func:`kept_copies` sees it."""

    address: str
    #: An inbox copy that keep-copy OFF would drop (False: quarantined, or no copy).
    has_inbox_copy: bool
    effects: ForwardEffects = field(default_factory=ForwardEffects)

    @property
    def is_end(self) -> bool:
        """The message stays here whatever happens upstream: a kept inbox copy, a
        quarantine copy, or a job that takes it on (and brings it back if it fails)."""
        e = self.effects
        return (not self.has_inbox_copy or e.keep_copy or e.remote is not None
                or e.queued is not None)

    @property
    def next_hops(self) -> list[str]:
        return [c.address.lower() for c in self.effects.hosted] + list(self.effects.revisits)


def kept_copies(nodes: Sequence[GraphNode]) -> set[str]:
    """The addresses (lower case) whose inbox copy is stored.  Keep-copy ON keeps it; OFF
    drops it only if the message reaches an end from there (a stored copy, a quarantine,
    a forward job).  A circle with no way out would lose the message: the first address
    of it (in expansion order — the message's own recipient first) keeps its copy, as a
    loop through ``Delivered-To`` did before."""
    by_address = {n.address.lower(): n for n in nodes}
    kept = {a for a, n in by_address.items() if n.has_inbox_copy and n.effects.keep_copy}
    ends = {a for a, n in by_address.items() if n.is_end}
    while True:
        reaches = _reaching(by_address, ends)
        stranded = [n for n in nodes if n.has_inbox_copy and n.address.lower() not in reaches]
        if not stranded:
            return kept
        first = stranded[0].address.lower()
        kept.add(first)
        ends.add(first)


def _reaching(nodes: dict[str, GraphNode], ends: set[str]) -> set[str]:
    """Addresses from which an end is reachable (the ends included)."""
    reaching = set(ends)
    changed = True
    while changed:
        changed = False
        for address, node in nodes.items():
            if address not in reaching and any(h in reaching for h in node.next_hops):
                reaching.add(address)
                changed = True
    return reaching


def reachable(recipients: Iterable[AddressPolicy], *,
              lookup: Callable[[str], AddressPolicy | None], hosted: Callable[[str], bool],
              limit: int) -> list[AddressPolicy]:
    """Hosted addresses (at most ``limit`` beyond ``recipients``) that forwarding could
    reach from them, whatever each one's decision: the scan runs every engine any of them
    wants."""
    seen = {p.address.lower() for p in recipients}
    queue = list(recipients)
    found: list[AddressPolicy] = []
    limit += len(seen)
    while queue and len(seen) < limit:
        policy = queue.pop(0)
        for destination in targets(policy.address, policy.forward_destinations):
            key = destination.lower()
            if key in seen or not hosted(destination):
                continue
            nxt = lookup(destination)
            if nxt is None or nxt.status == "deleted":
                continue
            seen.add(key)
            found.append(nxt)
            queue.append(nxt)
            if len(seen) >= limit:
                break
    return found
