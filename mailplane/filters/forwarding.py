"""Forwarding step (SPEC §5): where inbox mail is also sent, and whether a copy stays.

A delivery step, not a content filter: it acts on the merged decision, because only mail
that reached the inbox is forwarded — never quarantined mail (L4408) — while virus-cleaned
mail (the report with the neutralised original) is.  Destinations are de-duplicated and
never the address itself.  SRS, the loop guard and queueing happen in the MX service
(``outbound.forwarding.plan_forward``), which keeps the inbox copy whenever a forward is not
actually made, so keep-copy OFF can never lose a message.
"""

from __future__ import annotations

import dataclasses

from mailplane.filters.base import RecipientDecision
from mailplane.message import MessageContext
from mailplane.outbound.forwarding import clean_destinations
from mailplane.policy import AddressPolicy


class ForwardingStep:
    name = "forwarding"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, decision: RecipientDecision,
        *, require_address_in_recipients: bool,
    ) -> RecipientDecision:
        if decision.disposition != "inbox" or not policy.forward_destinations:
            return decision
        targets = tuple(clean_destinations(policy.address, policy.forward_destinations))
        if not targets:
            return decision
        return dataclasses.replace(
            decision, forward_to=targets, keep_copy=policy.forward_keep_copy,
            hits=(*decision.hits, self.name),
        )
