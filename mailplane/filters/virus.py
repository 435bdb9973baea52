"""Virus filter (SPEC §3): the per-recipient switch decides whether the scan counts.

The message is scanned once by the MX service if any recipient has the check ON; this
filter only reads that result.  Infected → the recipient gets the administrator's report
with the neutralised original instead of the message, and nothing else runs (stop).
"""

from __future__ import annotations

from mailplane.filters.base import ScanResults, Verdict, neutral
from mailplane.mail.message import MessageContext
from mailplane.policy.model import AddressPolicy


class VirusFilter:
    name = "virus"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict:
        if not policy.virus_check:
            return neutral(self.name)
        if scans.virus_unavailable:
            # on_error = accept: delivered unscanned, and the trace header says so.
            return neutral(self.name, note="unscanned")
        if scans.virus is not None and scans.virus.infected:
            return Verdict(
                filter=self.name,
                hit=True,
                replace_with_virus_report=True,
                stop=True,
                note=scans.virus.signature or "infected",
            )
        return neutral(self.name)
