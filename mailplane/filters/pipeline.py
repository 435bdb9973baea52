"""The ordered filter pipeline (DESIGN "A message through the MX service", step 2).

Two stages.  The content filters return Verdicts that ``merge`` folds into one decision
(inbox or quarantine, tag or not); a verdict may stop the fold.  The delivery steps then act
on that final decision — they must see it whole, since forwarding and auto-reply depend on
where the mail ended up, and they still run after a stop (the virus report is forwarded).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplane.filters.allow_list import AllowListFilter
from mailplane.filters.auto_reply import AutoReplyStep
from mailplane.filters.base import Filter, RecipientDecision, ScanResults, Verdict, merge
from mailplane.filters.deny_list import DenyListFilter
from mailplane.filters.forwarding import ForwardingStep
from mailplane.filters.spam import SpamFilter
from mailplane.filters.spoofing import SpoofFilter
from mailplane.filters.virus import VirusFilter
from mailplane.mail.message import MessageContext
from mailplane.policy.model import AddressPolicy

PIPELINE: tuple[Filter, ...] = (
    # First: infected content is never delivered, so nothing after it may see or tag it
    # (SPEC §3); it stops the fold and the report goes to the inbox.
    VirusFilter(),
    # Forged senders (なりすまし, SPEC §8b) are quarantined whatever the switches; the
    # quarantine is binding, so its reason wins and the allow list cannot lift it (an
    # allowed address proves nothing until the sender is authenticated).
    SpoofFilter(),
    # Before the lists: the [spam] tag applies even to allowed senders (L4104).
    SpamFilter(),
    # Deny list asks for quarantine; it must come before the allow list that can cancel it.
    DenyListFilter(),
    # Allow list cancels every quarantine asked for so far (spam or deny), keeps the tag.
    AllowListFilter(),
)

AFTER_DECISION = (
    # Forwarding only for mail that reached the inbox (L4408); decides keep-copy.
    ForwardingStep(),
    # Auto-reply last: never for quarantined or virus mail, RFC 3834 suppressions.
    AutoReplyStep(),
)


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """Operator choices the pure steps need (from ``[outbound]`` settings)."""

    auto_reply_require_recipient_header: bool = True


DEFAULT_OPTIONS = PipelineOptions()


def decide(
    ctx: MessageContext,
    policy: AddressPolicy,
    scans: ScanResults,
    pipeline: tuple[Filter, ...] = PIPELINE,
    options: PipelineOptions = DEFAULT_OPTIONS,
) -> RecipientDecision:
    """Run the filters in order for one recipient until one says stop, merge, then let the
    delivery steps act on the merged decision."""
    verdicts: list[Verdict] = []
    for step in pipeline:
        verdict = step(ctx, policy, scans)
        verdicts.append(verdict)
        if verdict.stop:
            break
    decision = merge(verdicts)
    for after in AFTER_DECISION:
        decision = after(
            ctx, policy, decision,
            require_address_in_recipients=options.auto_reply_require_recipient_header,
        )
    return decision
