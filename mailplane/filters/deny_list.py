"""Deny list (受信拒否, SPEC §4, L4233-4335): addresses, subjects, five header conditions.

A hit quarantines (L4084: denied mail is never rejected at SMTP).  The header conditions
look at the *header* From/Subject only, and never at a bounce: mail with the null envelope
sender (``MAIL FROM:<>``, RFC 5321 §4.5.5) is a delivery report, which often has no From
or Subject of the kind a person writes — "no From header" would quarantine the customer's
own bounces unseen (issue 22).  The address and subject lists still apply to it.
"""

from __future__ import annotations

from mailplane.filters.base import ScanResults, Verdict, neutral
from mailplane.filters.list_entries import sender_matches, subject_matches
from mailplane.mail.message import MessageContext, decode_header_text
from mailplane.policy.model import AddressPolicy, DenyConditions


def header_condition(ctx: MessageContext, conditions: DenyConditions) -> str | None:
    """Name of the first enabled header condition the message meets, or None; always None
    for a bounce (null envelope sender: SPEC §4)."""
    if not ctx.envelope_sender:
        return None
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


class DenyListFilter:
    name = "deny_list"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict:
        if sender_matches(policy.deny_addresses, ctx.sender_addresses):
            return Verdict(filter=self.name, hit=True, quarantine="deny", note="address")
        if subject_matches(policy.deny_subjects, ctx.subject) is not None:
            return Verdict(filter=self.name, hit=True, quarantine="deny", note="subject")
        condition = header_condition(ctx, policy.deny_conditions)
        if condition is not None:
            return Verdict(filter=self.name, hit=True, quarantine="deny", note=condition)
        return neutral(self.name)
