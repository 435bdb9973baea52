"""The delivery plan: everything one SMTP transaction (or one queued local delivery) will
write, as a value — built by :mod:`~mailplane.delivery.planner`, persisted all or nothing
by :mod:`~mailplane.delivery.store`."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailplane.delivery.jobs import PendingJob


@dataclass(frozen=True, slots=True)
class InboxWrite:
    """One copy for one mailbox's ``new/`` (trace headers already on top)."""

    address: str
    data: bytes


@dataclass(frozen=True, slots=True)
class QuarantineWrite:
    """One copy for one address's quarantine, with what its index row shows."""

    address: str
    data: bytes
    sender: str
    header_from: str
    subject: str
    reason: str


@dataclass(frozen=True, slots=True)
class RemoteForward:
    """A forward leaving the platform (one of ``DeliveryPlan.outbound``), counted against
    its owner's hourly limit before the plan is stored
    (:mod:`~mailplane.delivery.forward_gate`).  If the limit refuses it, the job is taken
    out and ``fallback`` — the owner's inbox copy that keep-copy OFF had dropped — goes in
    instead: nothing is lost.  ``record_srs``: remember the SRS sender, so a bounce to it
    is relayed (only for a sender that may get bounces)."""

    owner: str
    job: PendingJob
    fallback: InboxWrite | PendingJob | None
    record_srs: bool


@dataclass(slots=True)
class DeliveryPlan:
    inbox: list[InboxWrite] = field(default_factory=list)
    quarantine: list[QuarantineWrite] = field(default_factory=list)
    #: Jobs to queue with the delivery (forwards, auto-replies with their ledger claim,
    #: SRS returns, a submission's remote recipients).
    outbound: list[PendingJob] = field(default_factory=list)
    #: The forwards of ``outbound`` that leave the platform.
    remote_forwards: list[RemoteForward] = field(default_factory=list)
