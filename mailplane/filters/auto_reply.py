"""Auto-reply slot (SPEC §6) — a STUB for now: always a neutral verdict.

The real filter (a later issue) replies to inbox mail only, with RFC 3834 suppression and
the 24 h ledger claim; it runs last so quarantined or virus mail never gets a reply.
"""

from __future__ import annotations

from mailplane.filters.base import ScanResults, Verdict, neutral
from mailplane.message import MessageContext
from mailplane.policy import AddressPolicy


class AutoReplyFilter:
    name = "auto_reply"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict:
        return neutral(self.name)
