"""The planner: one message and its recipients' policies → a :class:`DeliveryPlan` value.

Pure apart from CPU: for each recipient it runs the pipeline
(:func:`mailplane.filters.pipeline.decide`) and turns the decision into writes — the inbox
copy with its trace headers and ``[spam]`` tag, or the quarantine copy, or the virus
report in place of the message — plus the jobs that go with it: forwards and the
auto-reply from :mod:`~mailplane.filters.auto_reply_gate` with its claim; each job names
the recipient whose rule queued it (``origin``).  Forwards to hosted addresses are not
jobs: the addresses they reach are planned in the same plan through their own pipelines,
once each (:class:`~mailplane.filters.forwarding.Expansion`, issue 20); only remote
destinations (SRS-rewritten) and hosted ones the node does not know yet become jobs.
Keep-copy OFF drops an inbox copy only when the message really goes on from there
(:func:`~mailplane.filters.forwarding.kept_copies`).
:class:`~mailplane.delivery.local.LocalDelivery` persists the plan.

One recipient's *optional* step — its auto-reply or its forward — that cannot be built
is logged, counted (``mailplane_recipient_step_failures_total``) and left out: the
message is still delivered to that recipient's inbox and to every other recipient
(issue 15; non-negotiable 2).  Values copied from the message into the quarantine index
are made header safe here (they are shown in digests and the API).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mailplane import metrics
from mailplane.config.settings import Settings
from mailplane.delivery.jobs import HELD_COPY, PendingJob
from mailplane.delivery.plan import DeliveryPlan, InboxWrite, QuarantineWrite, RemoteForward
from mailplane.filters.auto_reply_gate import AutoReplyGate
from mailplane.filters.base import ScanResults
from mailplane.filters.forwarding import (
    NO_FORWARD,
    Expansion,
    ForwardEffects,
    ForwardPlan,
    GraphNode,
    HostedCopy,
    forward_effects,
    kept_copies,
    plan_forward,
    return_to_sender,
    sender_may_get_bounces,
    split_hosted,
)
from mailplane.filters.pipeline import PipelineOptions, decide
from mailplane.mail.message import MessageContext
from mailplane.mail.preview import display_header
from mailplane.mail.rewrite import delivered_copy
from mailplane.mail.srs import Srs
from mailplane.mail.trace import delivery_trace, header_safe, received
from mailplane.net.throttled_log import ThrottledLog
from mailplane.notices.virus_report import build_virus_report
from mailplane.policy.model import AddressPolicy

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

Recipients = Sequence[tuple[str, AddressPolicy]]
#: Whether a copy of ``size`` bytes fits an address's mailbox now (expanded addresses).
Room = Callable[[AddressPolicy, int], bool]
#: Longest subject / sender text kept in a quarantine index row.
INDEX_TEXT_CHARS = 500
#: The ``with`` of the Received line of a copy delivered on the platform by forwarding
#: (RFC 5321 §4.4 Attdl-Protocol), like the queue's local transport.
LOCAL_PROTOCOL = "LOCAL"


def _job(kind: str, forward: ForwardPlan) -> PendingJob:
    return PendingJob(kind=kind, mail_from=forward.mail_from, recipients=forward.recipients,
                      message=forward.message)


@dataclass(slots=True)
class _Node:
    """One address the message reaches: a recipient of the transaction, or a hosted
    address reached by forwarding (``ctx`` is then the forwarder's copy)."""

    address: str
    policy: AddressPolicy
    ctx: MessageContext
    scan: ScanResults
    protocol: str
    expanded: bool = False
    inbox: InboxWrite | None = None
    #: An expanded copy with no room in its mailbox now: queued, stored when room is made.
    no_room: bool = False
    effects: ForwardEffects = NO_FORWARD


class DeliveryPlanner:
    def __init__(self, settings: Settings, srs: Srs, auto_replies: AutoReplyGate,
                 hosted: Callable[[str], bool],
                 lookup: Callable[[str], AddressPolicy | None] | None = None) -> None:
        """``hosted(address)``: whether an address is in a hosted domain, i.e. delivered by
        the queue's local transport (no SRS for it); ``lookup``: the node's policy
        snapshot, through which forwards to hosted addresses are expanded at once."""
        self.settings = settings
        self.srs = srs
        self.auto_replies = auto_replies
        self.hosted = hosted
        self.lookup = lookup or (lambda _address: None)
        self.options = PipelineOptions(
            auto_reply_require_recipient_header=(
                settings.outbound.auto_reply_require_recipient_header))

    def plan(self, ctx: MessageContext, recipients: Recipients, scan: ScanResults, *,
             protocol: str, listener: str, srs_returns: Sequence[str] = (),
             role_forwards: Mapping[str, str] | None = None,
             room: Room | None = None) -> DeliveryPlan:
        """Every recipient's pipeline, and the pipelines of the hosted addresses their
        forwards reach (one expansion per message, :class:`Expansion`).  ``room`` says
        whether an expanded address's copy fits its mailbox; one that does not is queued
        and stored later, never holding back the message."""
        plan = DeliveryPlan()
        expansion = Expansion(lookup=self.lookup, hosted=self.hosted,
                              seen=(address for address, _ in recipients),
                              limit=self.settings.forwarding.max_expansion)
        nodes = [_Node(address, policy, ctx, scan, protocol)
                 for address, policy in recipients]
        index = 0
        while index < len(nodes):
            node = nodes[index]
            index += 1
            nodes.extend(self._plan_node(node, scan, plan, expansion, listener=listener,
                                         room=room))
        self._settle(ctx, nodes, plan)
        for srs_recipient in srs_returns:
            # A bounce to one of our SRS addresses goes on to the original sender (SPEC §5).
            returned = return_to_sender(self.srs, srs_recipient=srs_recipient,
                                        envelope_sender=ctx.envelope_sender, raw=ctx.raw)
            self._queue("srs_return", returned, ctx, plan)
        for destination, role_address in (role_forwards or {}).items():
            self._role_forward(ctx, role_address, destination, plan, protocol=protocol)
        return plan

    def _role_forward(self, ctx: MessageContext, role_address: str, destination: str,
                      plan: DeliveryPlan, *, protocol: str) -> None:
        """Mail to a role mailbox (``postmaster@``, ``abuse@``) routed to an external
        destination: forwarded as a customer's forward is (:func:`plan_forward`: SRS
        sender, our ``Delivered-To``/``Received``), with none of a customer's rules."""
        forward = plan_forward(
            raw=ctx.raw, headers=ctx.headers, address=role_address,
            destinations=[destination], envelope_sender=ctx.envelope_sender,
            received=self.received(ctx, role_address, protocol), srs=self.srs,
            max_hops=self.settings.outbound.max_hops)
        if forward is None:  # a loop: it came back to us (logged by plan_forward)
            return
        plan.outbound.append(PendingJob(
            kind="forward", mail_from=forward.mail_from, recipients=forward.recipients,
            message=forward.message, bounce_to_sender=sender_may_get_bounces(ctx.auth)))

    def _queue(self, kind: str, forward: ForwardPlan, ctx: MessageContext,
               plan: DeliveryPlan) -> None:
        for part in split_hosted(forward, envelope_sender=ctx.envelope_sender,
                                 hosted=self.hosted):
            plan.outbound.append(_job(kind, part))

    def received(self, ctx: MessageContext, recipient: str, protocol: str) -> str:
        """This hop's ``Received`` value for ``recipient`` (RFC 5321 §4.4)."""
        return received(helo=ctx.helo, peer_ip=ctx.peer_ip, hostname=self.settings.mx.hostname,
                        protocol=protocol, queue_id=ctx.queue_id, recipient=recipient,
                        at=ctx.received_at, tz=self.settings.tz)

    def _plan_node(self, node: _Node, original_scan: ScanResults, plan: DeliveryPlan,
                   expansion: Expansion, *, listener: str,
                   room: Room | None) -> list[_Node]:
        """One address's pipeline: its quarantine copy, or its inbox copy (kept in the
        node until :meth:`_settle` knows whether keep-copy OFF may drop it), its forwards
        and its auto-reply; returns the hosted addresses its forwards reach."""
        ctx, address = node.ctx, node.address
        decision = decide(ctx, node.policy, node.scan, options=self.options)
        for hit in decision.hits:
            metrics.FILTER_HITS.labels(listener, hit).inc()
        received_value = self.received(ctx, address, node.protocol)
        scan = node.scan
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
            data, source = delivered_copy(report, trace=trace), report
        else:
            metrics.RECIPIENT_DECISIONS.labels(listener, decision.disposition).inc()
            trace = delivery_trace(return_path=ctx.envelope_sender, recipient=address,
                                   verdict=decision.trace(), received_value=received_value)
            data = delivered_copy(ctx.raw, trace=trace, tag_subject=decision.tag_subject)
            source = ctx.raw
            if decision.disposition == "quarantine":
                plan.quarantine.append(QuarantineWrite(
                    address=address, data=data,
                    sender=header_safe(ctx.envelope_sender, 320),
                    header_from=display_header(", ".join(ctx.header_from_addresses),
                                               INDEX_TEXT_CHARS),
                    # A folded Subject's tab is a space, not a "?" (issue 22).
                    subject=display_header(ctx.subject or "", INDEX_TEXT_CHARS),
                    reason=decision.quarantine_reason or "spam"))
                return []
        node.inbox = InboxWrite(address, data)
        node.no_room = node.expanded and room is not None and not room(node.policy, len(data))
        if decision.forward_to:
            try:
                node.effects = forward_effects(
                    ctx, address, decision, expansion, source=source,
                    received=received_value, srs=self.srs,
                    max_hops=self.settings.outbound.max_hops)
            except Exception as exc:
                _step_failed(listener, "forward", address, exc)  # the inbox keeps it
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
        # A report's copy is content we made, not the scanned message: nothing to say of it.
        copy_scan = original_scan if source is ctx.raw else ScanResults()
        return [_Node(copy.address, copy.policy, self._forwarded_ctx(ctx, copy),
                      copy_scan, LOCAL_PROTOCOL, expanded=True)
                for copy in node.effects.hosted]

    def _forwarded_ctx(self, ctx: MessageContext, copy: HostedCopy) -> MessageContext:
        """The message as the hosted destination receives it from its forwarder: the
        forwarder's trace on top, the original sender kept (no SRS on the platform), and
        what the MX learned about that sender."""
        return MessageContext(
            mail_from=ctx.mail_from, rcpt_tos=(copy.address,), raw=copy.message,
            received_at=ctx.received_at, peer_ip=None, helo=self.settings.mx.hostname,
            queue_id=ctx.queue_id, auth=ctx.auth)

    def _settle(self, ctx: MessageContext, nodes: list[_Node], plan: DeliveryPlan) -> None:
        """Which inbox copies are stored (:func:`kept_copies`), and the forward jobs with
        what each does if it cannot go: over the hourly limit it is not queued and the
        message stays in the inbox (:class:`RemoteForward`); failed for good, it comes
        back to the inbox of an address that kept no copy (``return_to``)."""
        kept = kept_copies([GraphNode(n.address, n.inbox is not None, n.effects)
                            for n in nodes])
        may_bounce = sender_may_get_bounces(ctx.auth)
        for node in nodes:
            if node.inbox is None:
                continue
            keeps = node.address.lower() in kept
            stored = self._stored(node, ctx, may_bounce)
            if keeps:
                if isinstance(stored, InboxWrite):
                    plan.inbox.append(stored)
                else:
                    plan.outbound.append(stored)
            return_to = "" if keeps else node.address
            effects = node.effects
            if effects.queued is not None:
                plan.outbound.append(PendingJob(
                    kind="forward", mail_from=effects.queued.mail_from,
                    recipients=effects.queued.recipients, message=effects.queued.message,
                    bounce_to_sender=may_bounce, return_to=return_to, origin=node.address))
            if effects.remote is not None:
                job = PendingJob(kind="forward", mail_from=effects.remote.mail_from,
                                 recipients=effects.remote.recipients,
                                 message=effects.remote.message,
                                 bounce_to_sender=may_bounce, return_to=return_to,
                                 origin=node.address)
                plan.outbound.append(job)
                plan.remote_forwards.append(RemoteForward(
                    owner=node.address, job=job, fallback=None if keeps else stored,
                    record_srs=may_bounce))

    @staticmethod
    def _stored(node: _Node, ctx: MessageContext, may_bounce: bool) -> InboxWrite | PendingJob:
        """How ``node``'s inbox copy is stored: now, or — an expanded address whose
        mailbox is full — queued until there is room (the queue's local transport stores
        it as it is, without running the pipeline again)."""
        assert node.inbox is not None
        if not node.no_room:
            return node.inbox
        return PendingJob(kind=HELD_COPY, mail_from=ctx.envelope_sender,
                          recipients=[node.address], message=node.inbox.data,
                          bounce_to_sender=may_bounce, origin=node.address)


def _step_failed(listener: str, step: str, address: str, exc: Exception) -> None:
    """An optional step of one recipient could not be built: counted and logged (once per
    interval per step, with its traceback), never a failure of the message."""
    metrics.RECIPIENT_STEP_FAILURES.labels(listener, step).inc()
    _throttled.error((step, type(exc).__name__), "%s for %s not built (the message is "
                     "still delivered): %s", step, address, type(exc).__name__, exc_info=exc)
