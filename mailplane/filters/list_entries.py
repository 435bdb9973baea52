"""Deny/allow list entries: how a typed line becomes a stored entry (SPEC §4, L4233-4392).

Pure functions, shared by the management API (which refuses what cannot work) and the MX
deny/allow filters (which must compare with exactly the same normalisation).

Address entries (deny list and allow list, manual L4250-4266, L4357-4370):
- ``user@host`` matches that sender exactly;
- ``domain.tld`` or ``@domain.tld`` matches every sender *ending with* it (``123.jp`` also
  catches ``x@abc123.jp`` — the manual warns about this, so it is accepted, not refused);
- an entry with neither ``@`` nor ``.`` (``tarou``, "左側だけの一部") has no effect and is
  refused with a message saying so.
Entries are folded as typed (a full-width ``ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ`` typed on a
Japanese keyboard becomes ASCII, ``。`` a dot: :func:`mailplane.mail.address.typed_address`,
as for forwarding), stripped and lower-cased; matching is case-insensitive.

Subject entries (L4272-4289): substring match on the decoded Subject.  NFKC turns half-width
katakana into full width before storing (``ｾｰﾙ`` → ``セール``), so ``ﾌﾚﾝﾄﾞ`` and ``フレンド`` are
one entry ("半角カタカナの重複はできません").  A single full-width character alone is refused
("全角一文字だけでは反映されません").

Blank lines are dropped and duplicates (after normalisation) are removed silently, keeping the
first — a pasted list with repeats is not an error, and what is stored is what the API returns.

Matching (:func:`sender_matches`, :func:`subject_matches`) lives here too, so the API
stores entries in exactly the form the deny and allow filters compare.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from mailplane.i18n import Text
from mailplane.mail.address import email_rule_violation, typed_address
from mailplane.mail.message import normalise_subject

_SUFFIX_RE = re.compile(r"[a-z0-9._-]+")
_SHOWN_CHARS = 40


class ListEntryError(ValueError):
    """One refused entry: ``index`` is its position in the list as submitted."""

    def __init__(self, index: int, entry: str, rule: str) -> None:
        super().__init__(index, entry, rule)
        self.index = index
        self.entry = entry
        self.rule = rule

    @property
    def text(self) -> Text:
        return Text("`{entry}`: {rule}", entry=shorten(self.entry), rule=self.rule)

    def __str__(self) -> str:
        return str(self.text)


class ListSizeError(ValueError):
    """The list, after dropping blanks and duplicates, is longer than allowed."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(count, limit)
        self.count = count
        self.limit = limit

    @property
    def text(self) -> Text:
        return Text("at most {limit} entries are allowed ({count} given)", limit=self.limit,
                    count=self.count)

    def __str__(self) -> str:
        return str(self.text)


def shorten(entry: str) -> str:
    """An entry as shown in an error message: long entries are cut, not echoed whole."""
    return entry if len(entry) <= _SHOWN_CHARS else entry[: _SHOWN_CHARS - 1] + "…"


# --- address entries --------------------------------------------------------------------


def normalise_address_entry(raw: str) -> str:
    """As typed (:func:`~mailplane.mail.address.typed_address`: NFKC, ``。`` as ``.``,
    surrounding whitespace removed), lower case: the stored and compared form — the same
    folding as a forwarding destination or the contact address."""
    return typed_address(raw).lower()


def address_entry_violation(entry: str, *, max_length: int) -> Text | None:
    """The rule a normalised address entry breaks, or None.  ``entry`` is never blank."""
    if len(entry) > max_length:
        return Text("must be at most {limit} characters", limit=max_length)
    if any(ch.isspace() for ch in entry):
        return Text("cannot contain spaces; put one entry per line")
    if "@" not in entry and "." not in entry:
        return Text("has no effect — enter user@host, @domain or domain.tld")
    if entry.startswith("@"):
        suffix = entry[1:]
        if not suffix:
            return Text("has no effect — enter a domain after @, e.g. @example.jp")
        if not _SUFFIX_RE.fullmatch(suffix):
            return Text("after @ only letters, digits, '-', '_' and '.' are allowed")
        return None
    if "@" in entry:
        problem = email_rule_violation(entry)
        return Text("is not a mail address ({problem})", problem=problem) if problem else None
    if not _SUFFIX_RE.fullmatch(entry):
        return Text("a domain may contain only letters, digits, '-', '_' and '.'")
    return None


@lru_cache(maxsize=65_536)
def _compiled(entries: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """One address's list as (exact addresses, suffixes): ``user@host`` entries match
    exactly, ``@domain``/``domain.tld`` entries as suffixes, an entry with neither ``@``
    nor ``.`` never.  Checked with one set lookup and one ``str.endswith`` per sender;
    lists are the policy snapshot's tuples, so each is compiled once per snapshot."""
    exact: set[str] = set()
    suffixes: list[str] = []
    for entry in entries:
        pattern = entry.strip().lower()
        if "@" in pattern and not pattern.startswith("@"):
            exact.add(pattern)
        elif pattern and ("@" in pattern or "." in pattern):
            suffixes.append(pattern)
    return frozenset(exact), tuple(suffixes)


def sender_matches(entries: tuple[str, ...], senders: Iterable[str]) -> bool:
    """True when some entry matches some sender address (case-insensitive)."""
    exact, suffixes = _compiled(entries)
    for sender in senders:
        address = sender.strip().lower()
        if address and (address in exact or address.endswith(suffixes)):
            return True
    return False


# --- subject entries --------------------------------------------------------------------


def normalise_subject_entry(raw: str) -> str:
    """NFKC (half-width katakana → full width) and surrounding whitespace removed.

    Case is kept for display; :func:`subject_match_key` folds ASCII case for comparing.
    """
    return unicodedata.normalize("NFKC", raw).strip()


def subject_match_key(text: str) -> str:
    """The form subjects and subject entries are compared in (NFKC + ASCII case folding)."""
    return normalise_subject(text)


def is_full_width(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def subject_entry_violation(entry: str, *, max_length: int) -> Text | None:
    """The rule a normalised subject entry breaks, or None.  ``entry`` is never blank."""
    if len(entry) > max_length:
        return Text("must be at most {limit} characters", limit=max_length)
    if any(unicodedata.category(ch) == "Cc" for ch in entry):
        return Text("cannot contain control characters; put one subject per line")
    if len(entry) == 1 and is_full_width(entry):
        return Text("a single full-width character alone has no effect — enter two or more")
    if len(entry) == 1:
        # SPEC §4: like a single full-width character, one letter (``a``) would catch
        # nearly every message and quarantine it unseen for days (issue 22).
        return Text("a single character alone would catch almost every message — enter two"
                    " or more")
    return None


@lru_cache(maxsize=65_536)
def _needle(entry: str) -> str:
    """A stored subject entry in compared form; entries repeat on every message, so each
    is normalised once (NFKC + ASCII case folding is not free)."""
    return subject_match_key(entry).strip()


def subject_matches(entries: tuple[str, ...], subject: str | None) -> str | None:
    """The first entry found in the decoded ``subject`` (substring, ASCII case-insensitive,
    NFKC on both sides), or None."""
    if not subject or not entries:
        return None
    haystack = subject_match_key(subject)
    for entry in entries:
        needle = _needle(entry)
        if needle and needle in haystack:
            return entry
    return None


# --- whole lists ------------------------------------------------------------------------


def clean_entries(
    raw_entries: Sequence[str],
    *,
    normalise: Callable[[str], str],
    violation: Callable[[str], str | None],
    key: Callable[[str], str] = lambda entry: entry,
    max_entries: int,
) -> list[str]:
    """Normalise, drop blanks, refuse bad entries, remove duplicates (by ``key``), count.

    Raises :class:`ListEntryError` for the first bad entry (with its submitted index) and
    :class:`ListSizeError` when more than ``max_entries`` distinct entries remain.
    """
    cleaned: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_entries):
        entry = normalise(raw)
        if not entry:
            continue
        problem = violation(entry)
        if problem:
            raise ListEntryError(index, entry, problem)
        identity = key(entry)
        if identity in seen:
            continue
        seen.add(identity)
        cleaned.append(entry)
    if len(cleaned) > max_entries:
        raise ListSizeError(len(cleaned), max_entries)
    return cleaned


def clean_address_list(
    raw_entries: Sequence[str], *, max_entries: int, max_length: int
) -> list[str]:
    """Deny/allow list addresses as stored: see the module docstring."""
    return clean_entries(
        raw_entries,
        normalise=normalise_address_entry,
        violation=lambda entry: address_entry_violation(entry, max_length=max_length),
        max_entries=max_entries,
    )


def clean_subject_list(
    raw_entries: Sequence[str], *, max_entries: int, max_length: int
) -> list[str]:
    """Deny list subjects as stored; duplicates are judged case-insensitively."""
    return clean_entries(
        raw_entries,
        normalise=normalise_subject_entry,
        violation=lambda entry: subject_entry_violation(entry, max_length=max_length),
        key=subject_match_key,
        max_entries=max_entries,
    )


def mailbox_violation(entry: str, *, max_length: int) -> Text | None:
    """A complete mail address (auto-reply special senders): no suffix patterns here."""
    if len(entry) > max_length:
        return Text("must be at most {limit} characters", limit=max_length)
    return email_rule_violation(entry)


def clean_mailbox_list(
    raw_entries: Sequence[str], *, max_entries: int, max_length: int
) -> list[str]:
    """Complete mail addresses, NFKC + lower case, blanks dropped, duplicates removed."""
    return clean_entries(
        raw_entries,
        normalise=normalise_address_entry,
        violation=lambda entry: mailbox_violation(entry, max_length=max_length),
        max_entries=max_entries,
    )
