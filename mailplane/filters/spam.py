"""Spam filter (SPEC §4, L4175-4197): judge tags, quarantine moves, notify is a digest.

Quarantine and notify act on the judge's verdict, so they can be ON only while judge is ON
(:func:`check_switches`, what the API enforces; to turn judge OFF the caller sends all
three OFF).  This filter also only quarantines when both are set, so a stale row cannot
quarantine without a tag.
"""

from __future__ import annotations

from mailplane.filters.base import ScanResults, Verdict, neutral
from mailplane.mail.message import MessageContext
from mailplane.policy.model import AddressPolicy
from mailplane.rules import RuleViolation


def check_switches(*, judge: bool, quarantine: bool, notify: bool) -> None:
    """SPEC §4 (L4175-4197): quarantine and notify only while judge is ON."""
    if not judge:
        for name, on in (("quarantine", quarantine), ("notify", notify)):
            if on:
                raise RuleViolation(name, "can be ON only while judge is ON")


class SpamFilter:
    name = "spam"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict:
        if not policy.spam_judge:
            return neutral(self.name)
        if scans.spam_unavailable:
            return neutral(self.name, note="unscanned")
        result = scans.spam
        if result is None or not result.is_spam:
            return neutral(self.name)
        return Verdict(
            filter=self.name,
            hit=True,
            tag_spam=True,
            quarantine="spam" if policy.spam_quarantine else None,
            note=f"{result.score:.1f}/{result.threshold:.1f}",
        )
