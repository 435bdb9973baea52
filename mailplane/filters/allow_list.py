"""Allow list (受信許可, SPEC §4, L4337-4392): an allowed sender is never quarantined.

Same matching as the deny list (header From and envelope sender).  It cancels a quarantine
asked for by the spam check or the deny list, but the ``[spam]`` tag stays (L4104).
"""

from __future__ import annotations

from mailplane.filters.base import ScanResults, Verdict, neutral
from mailplane.filters.list_entries import sender_matches
from mailplane.mail.message import MessageContext
from mailplane.policy.model import AddressPolicy


class AllowListFilter:
    name = "allow_list"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict:
        if not sender_matches(policy.allow_addresses, ctx.sender_addresses):
            return neutral(self.name)
        return Verdict(filter=self.name, hit=True, cancel_quarantine=True)
