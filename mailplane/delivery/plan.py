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


@dataclass(slots=True)
class DeliveryPlan:
    inbox: list[InboxWrite] = field(default_factory=list)
    quarantine: list[QuarantineWrite] = field(default_factory=list)
    #: Jobs to queue with the delivery (forwards, auto-replies with their ledger claim,
    #: SRS returns, a submission's remote recipients).
    outbound: list[PendingJob] = field(default_factory=list)
