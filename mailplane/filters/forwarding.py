"""Forwarding slot (SPEC §5) — a STUB for now: always a neutral verdict.

The real filter (a later issue) will ask for forwards of inbox mail only, with SRS and a
loop guard, and decide keep-copy.  It sits after the quarantine decision in the pipeline
because quarantined mail is never forwarded (L4408).
"""

from __future__ import annotations

from mailplane.filters.base import ScanResults, Verdict, neutral
from mailplane.message import MessageContext
from mailplane.policy import AddressPolicy


class ForwardingFilter:
    name = "forwarding"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict:
        return neutral(self.name)
