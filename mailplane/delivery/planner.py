"""The planner: one message and its recipients' policies → a :class:`DeliveryPlan` value.

Pure apart from CPU: for each recipient it runs the pipeline
(:func:`mailplane.filters.pipeline.decide`) and turns the decision into writes — the inbox
copy with its trace headers and ``[spam]`` tag, or the quarantine copy, or the virus
report in place of the message — plus the jobs that go with it: forwards (keep-copy OFF
drops the inbox copy only when a forward is really queued; SRS only for destinations off
the platform) and the auto-reply from :mod:`~mailplane.filters.auto_reply_gate` with its
claim.  Each job names the recipient whose rule queued it (``origin``).
:class:`~mailplane.delivery.local.LocalDelivery` persists the plan.

One recipient's *optional* step — its auto-reply or its forward — that cannot be built
is logged, counted (``mailplane_recipient_step_failures_total``) and left out: the
message is still delivered to that recipient's inbox and to every other recipient
(issue 15; non-negotiable 2).  Values copied from the message into the quarantine index
are made header safe here (they are shown in digests and the API).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from mailplane import metrics
from mailplane.config.settings import Settings
from mailplane.delivery.jobs import PendingJob
from mailplane.delivery.plan import DeliveryPlan, InboxWrite, QuarantineWrite
from mailplane.filters.auto_reply_gate import AutoReplyGate
from mailplane.filters.base import RecipientDecision, ScanResults
from mailplane.filters.forwarding import (
    ForwardPlan,
    plan_forward,
    return_to_sender,
    split_hosted,
)
from mailplane.filters.pipeline import PipelineOptions, decide
from mailplane.mail.message import MessageContext
from mailplane.mail.rewrite import delivered_copy
from mailplane.mail.srs import Srs
from mailplane.mail.trace import delivery_trace, header_safe, received
from mailplane.net.throttled_log import ThrottledLog
from mailplane.notices.virus_report import build_virus_report
from mailplane.policy.model import AddressPolicy

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

Recipients = Sequence[tuple[str, AddressPolicy]]
#: Longest subject / sender text kept in a quarantine index row.
INDEX_TEXT_CHARS = 500


def _job(kind: str, forward: ForwardPlan, origin: str) -> PendingJob:
    return PendingJob(kind=kind, mail_from=forward.mail_from, recipients=forward.recipients,
                      message=forward.message, origin=origin)


class DeliveryPlanner:
    def __init__(self, settings: Settings, srs: Srs, auto_replies: AutoReplyGate,
                 hosted: Callable[[str], bool]) -> None:
        """``hosted(address)``: whether an address is in a hosted domain, i.e. delivered by
        the queue's local transport (no SRS for it)."""
        self.settings = settings
        self.srs = srs
        self.auto_replies = auto_replies
        self.hosted = hosted
        self.options = PipelineOptions(
            auto_reply_require_recipient_header=(
                settings.outbound.auto_reply_require_recipient_header))

    def plan(self, ctx: MessageContext, recipients: Recipients, scan: ScanResults, *,
             protocol: str, listener: str, srs_returns: Sequence[str] = ()) -> DeliveryPlan:
        plan = DeliveryPlan()
        for address, policy in recipients:
            self._plan_recipient(ctx, address, policy, scan, plan, protocol=protocol,
                                 listener=listener)
        for srs_recipient in srs_returns:
            # A bounce to one of our SRS addresses goes on to the original sender (SPEC §5).
            returned = return_to_sender(self.srs, srs_recipient=srs_recipient,
                                        envelope_sender=ctx.envelope_sender, raw=ctx.raw)
            self._queue("srs_return", returned, ctx, plan)
        return plan

    def _queue(self, kind: str, forward: ForwardPlan, ctx: MessageContext,
               plan: DeliveryPlan, origin: str = "") -> None:
        for part in split_hosted(forward, envelope_sender=ctx.envelope_sender,
                                 hosted=self.hosted):
            plan.outbound.append(_job(kind, part, origin))

    def received(self, ctx: MessageContext, recipient: str, protocol: str) -> str:
        """This hop's ``Received`` value for ``recipient`` (RFC 5321 §4.4)."""
        return received(helo=ctx.helo, peer_ip=ctx.peer_ip, hostname=self.settings.mx.hostname,
                        protocol=protocol, queue_id=ctx.queue_id, recipient=recipient,
                        at=ctx.received_at, tz=self.settings.tz)

    def _plan_recipient(self, ctx: MessageContext, address: str, policy: AddressPolicy,
                        scan: ScanResults, plan: DeliveryPlan, *, protocol: str,
                        listener: str) -> None:
        decision = decide(ctx, policy, scan, options=self.options)
        for hit in decision.hits:
            metrics.FILTER_HITS.labels(listener, hit).inc()
        received_value = self.received(ctx, address, protocol)
        if decision.virus_report:
            # SPEC §3: the infected content is not delivered; the administrator's report
            # with the neutralised original takes its place, and is forwarded like mail.
            metrics.RECIPIENT_DECISIONS.labels(listener, "virus_report").inc()
            signature = scan.virus.signature if scan.virus else ""
            report = build_virus_report(
                self.settings, ctx=ctx, recipient=address, signature=signature,
                infected_parts=scan.infected_parts, now=ctx.received_at)
            trace = delivery_trace(return_path="", recipient=address,
                                   verdict=decision.trace(), received_value=received_value)
            self._deliver_and_forward(ctx, address, decision, plan, received_value,
                                      inbox_copy=delivered_copy(report, trace=trace),
                                      forward_source=report, listener=listener)
            return
        metrics.RECIPIENT_DECISIONS.labels(listener, decision.disposition).inc()
        trace = delivery_trace(return_path=ctx.envelope_sender, recipient=address,
                               verdict=decision.trace(), received_value=received_value)
        data = delivered_copy(ctx.raw, trace=trace, tag_subject=decision.tag_subject)
        if decision.disposition == "quarantine":
            plan.quarantine.append(QuarantineWrite(
                address=address, data=data,
                sender=header_safe(ctx.envelope_sender, 320),
                header_from=header_safe(", ".join(ctx.header_from_addresses),
                                        INDEX_TEXT_CHARS),
                subject=header_safe(ctx.subject or "", INDEX_TEXT_CHARS),
                reason=decision.quarantine_reason or "spam"))
            return
        self._deliver_and_forward(ctx, address, decision, plan, received_value,
                                  inbox_copy=data, forward_source=ctx.raw, listener=listener)

    def _deliver_and_forward(self, ctx: MessageContext, address: str,
                             decision: RecipientDecision, plan: DeliveryPlan,
                             received_value: str, *, inbox_copy: bytes,
                             forward_source: bytes, listener: str) -> None:
        """The inbox copy, forwards (SPEC §5) and the auto-reply (SPEC §6) of inbox mail.

        The forwarded copy is the message as received — no ``[spam]`` rewrite, so DKIM
        survives.  Keep-copy OFF drops the inbox copy only when a forward is really queued
        (a loop keeps it, never loses it)."""
        forward = None
        if decision.forward_to:
            try:
                forward = plan_forward(
                    raw=forward_source, headers=ctx.headers, address=address,
                    destinations=decision.forward_to, envelope_sender=ctx.envelope_sender,
                    received=received_value, srs=self.srs,
                    max_hops=self.settings.outbound.max_hops)
            except Exception as exc:
                _step_failed(listener, "forward", address, exc)  # the inbox keeps it
        if forward is not None:
            self._queue("forward", forward, ctx, plan, origin=address)
        if forward is None or decision.keep_copy:
            plan.inbox.append(InboxWrite(address, inbox_copy))
        if decision.auto_reply_body is not None:
            try:
                reply = self.auto_replies.reply(ctx, address, decision.auto_reply_body)
            except Exception as exc:
                _step_failed(listener, "auto_reply", address, exc)
            else:
                if reply is not None:  # queued only if its claim wins in the transaction
                    plan.outbound.append(PendingJob(
                        kind="auto_reply", mail_from=reply.mail_from,
                        recipients=[reply.recipient], message=reply.message,
                        condition=reply.claim, origin=address))


def _step_failed(listener: str, step: str, address: str, exc: Exception) -> None:
    """An optional step of one recipient could not be built: counted and logged (once per
    interval per step, with its traceback), never a failure of the message."""
    metrics.RECIPIENT_STEP_FAILURES.labels(listener, step).inc()
    _throttled.error((step, type(exc).__name__), "%s for %s not built (the message is "
                     "still delivered): %s", step, address, type(exc).__name__, exc_info=exc)
