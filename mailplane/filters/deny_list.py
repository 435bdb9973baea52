"""Deny list (受信拒否, SPEC §4, L4233-4335): addresses, subjects, five header conditions.

A hit quarantines (L4084: denied mail is never rejected at SMTP).  The header conditions
look at the *header* From/Subject only: the envelope null sender is a bounce and must never
trigger them.
"""

from __future__ import annotations

from functools import lru_cache

from mailplane.filters.address_match import any_match
from mailplane.filters.base import ScanResults, Verdict, neutral
from mailplane.message import MessageContext, decode_header_text, normalise_subject
from mailplane.policy import AddressPolicy, DenyConditions


def header_condition(ctx: MessageContext, conditions: DenyConditions) -> str | None:
    """Name of the first enabled header condition the message meets, or None."""
    from_raw = ctx.header_from_raw
    if conditions.no_from and from_raw is None:
        return "no_from"
    if from_raw is not None:
        from_text = decode_header_text(from_raw).strip()
        if conditions.angle_from and from_text == "<>":
            return "angle_from"
        if conditions.blank_from and from_text == "":
            return "blank_from"
    subject = ctx.subject
    if conditions.no_subject and subject is None:
        return "no_subject"
    if conditions.blank_subject and subject is not None and subject.strip() == "":
        return "blank_subject"
    return None


@lru_cache(maxsize=65_536)
def _needle(entry: str) -> str:
    """A stored subject entry in compared form; entries repeat on every message, so each
    is normalised once (NFKC + ASCII case folding is not free)."""
    return normalise_subject(entry)


def subject_match(ctx: MessageContext, entries: tuple[str, ...]) -> str | None:
    subject = ctx.subject
    if not subject or not entries:
        return None
    haystack = normalise_subject(subject)
    for entry in entries:
        needle = _needle(entry)
        if needle and needle in haystack:
            return entry
    return None


class DenyListFilter:
    name = "deny_list"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict:
        if any_match(policy.deny_addresses, ctx.sender_addresses):
            return Verdict(filter=self.name, hit=True, quarantine="deny", note="address")
        if subject_match(ctx, policy.deny_subjects) is not None:
            return Verdict(filter=self.name, hit=True, quarantine="deny", note="subject")
        condition = header_condition(ctx, policy.deny_conditions)
        if condition is not None:
            return Verdict(filter=self.name, hit=True, quarantine="deny", note=condition)
        return neutral(self.name)
