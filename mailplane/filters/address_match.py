"""Sender matching shared by the deny list and the allow list (SPEC §4, L4233-4392).

Rules, exactly as the manual states them:
- ``user@host`` matches that address exactly;
- ``domain.tld`` or ``@domain.tld`` matches every sender address that *ends with* the entry
  (so ``123.jp`` also catches ``x@abc123.jp`` — the manual warns about this);
- an entry with neither ``@`` nor ``.`` has no effect (the API refuses it on save).
All comparisons are case-insensitive.
"""

from __future__ import annotations

from collections.abc import Iterable


def entry_matches(entry: str, sender: str) -> bool:
    pattern = entry.strip().lower()
    address = sender.strip().lower()
    if not pattern or not address:
        return False
    if "@" in pattern and not pattern.startswith("@"):
        return address == pattern
    if "@" not in pattern and "." not in pattern:
        return False
    return address.endswith(pattern)


def first_match(entries: Iterable[str], senders: Iterable[str]) -> str | None:
    """The first list entry matching any of ``senders``, or None."""
    sender_list = tuple(senders)
    for entry in entries:
        if any(entry_matches(entry, sender) for sender in sender_list):
            return entry
    return None
