"""Auto-reply step (SPEC §6): which message, if any, this sender should get.

Acts on the merged decision: quarantined or virus mail never gets a reply, and neither do
bounces, robots, lists or bulk mail (RFC 3834 §2, ``outbound.auto_reply.suppression_reason``).
The once-per-24-hours rule needs the shared ledger, so the MX claims it in the delivery
transaction; this step only decides whether a reply is wanted and with which text.
"""

from __future__ import annotations

import dataclasses

from mailplane.filters.base import RecipientDecision
from mailplane.message import MessageContext
from mailplane.outbound.auto_reply import choose_message, suppression_reason
from mailplane.policy import AddressPolicy


class AutoReplyStep:
    name = "auto_reply"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, decision: RecipientDecision,
        *, require_address_in_recipients: bool,
    ) -> RecipientDecision:
        if not policy.auto_reply.enabled:
            return decision
        reason = suppression_reason(
            address=policy.address,
            envelope_sender=ctx.envelope_sender,
            headers=ctx.headers,
            quarantined_or_virus=decision.disposition != "inbox" or decision.virus_report,
            require_address_in_recipients=require_address_in_recipients,
        )
        if reason is not None:
            return dataclasses.replace(
                decision, notes=(*decision.notes, f"{self.name}=suppressed:{reason}")
            )
        body = choose_message(policy.auto_reply, ctx.envelope_sender)
        if body is None:
            return decision
        return dataclasses.replace(decision, auto_reply_body=body)
