"""The ordered filter pipeline (DESIGN "A message through the MX service", step 2)."""

from __future__ import annotations

from mailplane.filters.allow_list import AllowListFilter
from mailplane.filters.auto_reply import AutoReplyFilter
from mailplane.filters.base import Filter, RecipientDecision, ScanResults, Verdict, merge
from mailplane.filters.deny_list import DenyListFilter
from mailplane.filters.forwarding import ForwardingFilter
from mailplane.filters.spam import SpamFilter
from mailplane.filters.virus import VirusFilter
from mailplane.message import MessageContext
from mailplane.policy import AddressPolicy

PIPELINE: tuple[Filter, ...] = (
    # First: infected content is never delivered, so nothing after it may see or tag it
    # (SPEC §3); it stops the pipeline and the report goes to the inbox.
    VirusFilter(),
    # Before the lists: the [spam] tag applies even to allowed senders (L4104).
    SpamFilter(),
    # Deny list asks for quarantine; it must come before the allow list that can cancel it.
    DenyListFilter(),
    # Allow list cancels every quarantine asked for so far (spam or deny), keeps the tag.
    AllowListFilter(),
    # Forwarding only for inbox mail (L4408), hence after the quarantine decision. STUB.
    ForwardingFilter(),
    # Auto-reply last: never for quarantined or virus mail (SPEC §6). STUB.
    AutoReplyFilter(),
)


def decide(
    ctx: MessageContext,
    policy: AddressPolicy,
    scans: ScanResults,
    pipeline: tuple[Filter, ...] = PIPELINE,
) -> RecipientDecision:
    """Run the filters in order for one recipient until one says stop, then merge."""
    verdicts: list[Verdict] = []
    for step in pipeline:
        verdict = step(ctx, policy, scans)
        verdicts.append(verdict)
        if verdict.stop:
            break
    return merge(verdicts)
