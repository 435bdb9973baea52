"""Forwarding (SPEC §5, L4396-4523): every part of the rule in one place.

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
  the inbox copy even with keep-copy OFF, so a loop never loses a message.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr

from mailplane.filters.base import RecipientDecision
from mailplane.mail.address import email_rule_violation
from mailplane.mail.message import MessageContext
from mailplane.mail.rewrite import header_line
from mailplane.mail.srs import Srs
from mailplane.policy.model import AddressPolicy
from mailplane.rules import RuleViolation

log = logging.getLogger(__name__)

#: SPEC §5, L4400.
MAX_DESTINATIONS = 3


# --- input (the API) ------------------------------------------------------------------


def normalise_destination(raw: str) -> str:
    """Surrounding spaces removed and the domain lower-cased; the local part is kept as
    typed (RFC 5321 §2.4) but compared case-insensitively."""
    local, at, domain = raw.strip().rpartition("@")
    return f"{local}{at}{domain.lower()}" if at else raw.strip()


def clean_destinations(raw: Sequence[str], own_address: str) -> list[str]:
    """The destinations as stored; :class:`RuleViolation` names the first bad field."""
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
