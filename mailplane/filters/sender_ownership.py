"""Sender ownership on submission (issue 5; RFC 6409 §6.1 lets an MSA enforce it).

An authenticated customer may send only as the address it logged in as — the envelope
sender (MAIL FROM), every address in the header From, and (issue 15) every address in
``Sender``, ``Resent-From`` and ``Resent-Sender``, which mail clients show as the sender
("on behalf of") — compared case-insensitively.
Otherwise a leaked POP password would let anyone send as any customer through our servers.
Pure: the SMTP layer turns a refusal into ``553 5.7.1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Headers besides From that name who sent the message (RFC 5322 §3.6.2, §3.6.6).
SENDER_HEADERS = ("Sender", "Resent-From", "Resent-Sender")


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


def foreign_sender_header(*, authenticated: str,
                          present: Mapping[str, Sequence[str]]) -> str | None:
    """The first header of :data:`SENDER_HEADERS` present in the message (``present``:
    name → its addresses) that names anyone but the authenticated address, or names no
    address at all; None when every one present is the customer's own."""
    owner = _norm(authenticated)
    for name, addresses in present.items():
        if not addresses or any(_norm(address) != owner for address in addresses):
            return name
    return None
