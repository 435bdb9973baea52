"""Verdicts, the filter protocol and merge() (DESIGN "A message through the MX service").

A filter is a small pure function of (message, recipient policy, scan results) that returns
a :class:`Verdict`.  Scanning is I/O, so the MX service calls the engines *before* the
pipeline and hands their results in as :class:`ScanResults`; filters never do I/O.  "Stop"
is a value (``Verdict.stop``), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from mailplane.filters.engines.base import SpamScanResult, VirusScanResult
from mailplane.mail.message import MessageContext
from mailplane.policy.model import AddressPolicy


@dataclass(frozen=True, slots=True)
class ScanResults:
    """What the engines said about the whole message (each engine runs at most once).

    ``None`` means the engine was not asked (no recipient wanted it) or could not answer
    and ``on_error = accept`` let the message through unscanned (``*_unavailable``).
    """

    virus: VirusScanResult | None = None
    virus_unavailable: bool = False
    #: Leaf MIME parts (``mail.mime.leaf_parts`` order) found infected on their own; empty
    #: with an infected ``virus`` means no single part is to blame (remove every leaf).
    infected_parts: frozenset[int] = frozenset()
    spam: SpamScanResult | None = None
    spam_unavailable: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """One filter's answer for one recipient.

    ``note`` lands in the ``X-Mailplane-Verdict`` trace header: it must never hold a
    secret (a signature name or a score is fine).
    """

    filter: str
    hit: bool = False
    tag_spam: bool = False
    quarantine: str | None = None
    #: This quarantine wins over every other reason and no ``cancel_quarantine`` lifts
    #: it (なりすまし: the allow list must not release a forged sender, SPEC §8b).
    binding: bool = False
    cancel_quarantine: bool = False
    replace_with_virus_report: bool = False
    stop: bool = False
    note: str = ""


def neutral(name: str, note: str = "") -> Verdict:
    return Verdict(filter=name, note=note)


class Filter(Protocol):
    name: str

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict: ...


Disposition = Literal["inbox", "quarantine"]


@dataclass(frozen=True, slots=True)
class RecipientDecision:
    """What happens to the message for one recipient, after every filter has spoken."""

    disposition: Disposition
    quarantine_reason: str | None
    tag_subject: bool
    virus_report: bool
    hits: tuple[str, ...]
    notes: tuple[str, ...] = ()
    #: Filled in after the content filters by the delivery steps (pipeline.AFTER_DECISION).
    forward_to: tuple[str, ...] = ()
    keep_copy: bool = True
    auto_reply_body: str | None = None

    def trace(self) -> str:
        """Value of the ``X-Mailplane-Verdict`` header (RFC 5322 §3.6.7 trace style)."""
        hits = ",".join(self.hits) if self.hits else "none"
        text = f"{self.disposition}; hits={hits}"
        if self.quarantine_reason:
            text += f"; reason={self.quarantine_reason}"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text


def merge(verdicts: list[Verdict] | tuple[Verdict, ...]) -> RecipientDecision:
    """Fold verdicts in pipeline order; a ``stop`` verdict ends the fold.

    The first quarantine reason wins; ``cancel_quarantine`` (allow list) cancels every
    quarantine asked for so far but never the spam tag (SPEC §4, L4104).  A ``binding``
    quarantine wins over the others and is never cancelled (SPEC §8b).
    """
    quarantine: str | None = None
    binding = False
    tag = False
    report = False
    hits: list[str] = []
    notes: list[str] = []
    for verdict in verdicts:
        if verdict.hit:
            hits.append(verdict.filter)
        if verdict.note:
            notes.append(f"{verdict.filter}={verdict.note}")
        tag = tag or verdict.tag_spam
        report = report or verdict.replace_with_virus_report
        if verdict.quarantine and verdict.binding and not binding:
            quarantine, binding = verdict.quarantine, True
        elif verdict.quarantine and quarantine is None:
            quarantine = verdict.quarantine
        if verdict.cancel_quarantine and not binding:
            quarantine = None
        if verdict.stop:
            break
    return RecipientDecision(
        disposition="quarantine" if quarantine else "inbox",
        quarantine_reason=quarantine,
        tag_subject=tag,
        virus_report=report,
        hits=tuple(hits),
        notes=tuple(notes),
    )
