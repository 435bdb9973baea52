"""Sender ownership on submission (issue 5; RFC 6409 §6.1 lets an MSA enforce it).

An authenticated customer may send only as the address it logged in as — both the envelope
sender (MAIL FROM) and every address in the header From — compared case-insensitively.
Otherwise a leaked POP password would let anyone send as any customer through our servers.
Pure: the SMTP layer turns a refusal into ``553 5.7.1``.
"""

from __future__ import annotations

from collections.abc import Sequence


def _norm(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def envelope_sender_owned(*, authenticated: str, mail_from: str) -> bool:
    """MAIL FROM must be the authenticated address (the null sender is not)."""
    sender = _norm(mail_from)
    return bool(sender) and sender == _norm(authenticated)


def header_from_owned(*, authenticated: str, header_from: Sequence[str]) -> bool:
    """Every From address must be the authenticated one; a message without one is refused
    too (RFC 5322 §3.6 requires From, and we will not invent it for the customer)."""
    owner = _norm(authenticated)
    return bool(header_from) and all(_norm(address) == owner for address in header_from)
