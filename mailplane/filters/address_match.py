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
from functools import lru_cache


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


@lru_cache(maxsize=65_536)
def _compiled(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """One address's list as (exact addresses, suffixes): the same rules as
    :func:`entry_matches`, checked with one set lookup and one ``str.endswith`` per sender
    instead of a loop over every entry.  Lists are the policy snapshot's tuples, so each
    is compiled once per snapshot."""
    exact: set[str] = set()
    suffixes: list[str] = []
    for entry in entries:
        pattern = entry.strip().lower()
        if "@" in pattern and not pattern.startswith("@"):
            exact.add(pattern)
        elif pattern and ("@" in pattern or "." in pattern):
            suffixes.append(pattern)
    return frozenset(exact), tuple(suffixes)


def any_match(entries: tuple[str, ...], senders: Iterable[str]) -> bool:
    """True when some entry matches some sender (same answer as :func:`first_match`)."""
    exact, suffixes = _compiled(entries)
    for sender in senders:
        address = sender.strip().lower()
        if address and (address in exact or address.endswith(suffixes)):
            return True
    return False


def first_match(entries: Iterable[str], senders: Iterable[str]) -> str | None:
    """The first list entry matching any of ``senders``, or None."""
    sender_list = tuple(senders)
    for entry in entries:
        if any(entry_matches(entry, sender) for sender in sender_list):
            return entry
    return None
