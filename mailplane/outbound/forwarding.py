"""Forwarded copies (SPEC §5) — pure functions, no I/O.

The copy is the message *exactly as received* with only our trace headers on top
(``Delivered-To`` for the hosted address, then ``Received``): no ``[spam] `` tag and no
re-serialisation, so a DKIM signature still verifies downstream.  Incoming ``Delivered-To``
headers are kept — they are how the loop guard sees that a message already passed through
an address, even when it went out through other hosts and came back.

The envelope sender is the SRS-rewritten original sender, so SPF passes at the destination
and a bounce comes back to our SRS address, which the MX reverses to the original sender.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr

from mailplane.delivery.rewrite import header_line
from mailplane.outbound.srs import Srs

log = logging.getLogger(__name__)

MAX_DESTINATIONS = 3


@dataclass(frozen=True, slots=True)
class ForwardPlan:
    """One outbound job: stage it with ``kind="forward"``."""

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


def clean_destinations(address: str, destinations: tuple[str, ...] | list[str]) -> list[str]:
    """At most 3, no duplicates, never the address itself (SPEC §5, L4409)."""
    seen: set[str] = {address.lower()}
    result: list[str] = []
    for destination in destinations:
        key = destination.strip().lower()
        if key and key not in seen:
            seen.add(key)
            result.append(destination.strip())
    return result[:MAX_DESTINATIONS]


def forwarded_copy(raw: bytes, *, address: str, received: str) -> bytes:
    """``raw`` unchanged below our ``Delivered-To`` and ``Received`` lines."""
    return header_line("Delivered-To", address) + header_line("Received", received) + raw


def plan_forward(
    *,
    raw: bytes,
    headers: Message,
    address: str,
    destinations: tuple[str, ...] | list[str],
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
    recipients = clean_destinations(address, destinations)
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
