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


class RecipientsGone(Exception):
    """Every recipient of the plan was deleted after the node's last policy refresh
    (found inside the delivery transaction): nothing was stored (``550 5.1.1``)."""

    def __init__(self, addresses: frozenset[str]) -> None:
        super().__init__(", ".join(sorted(addresses)))
        self.addresses = addresses


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
    #: Jobs to queue with the delivery (forwards, auto-replies with their claim, SRS
    #: returns, DSNs, a submission's remote recipients).
    outbound: list[PendingJob] = field(default_factory=list)
    #: The forwards of ``outbound`` that leave the platform.
    remote_forwards: list[RemoteForward] = field(default_factory=list)
    #: Hosted recipients left out because their address no longer exists (set by the
    #: store, inside the delivery transaction).
    gone: frozenset[str] = frozenset()

    def recipients(self) -> set[str]:
        """The hosted addresses the plan stores something for or queues something of."""
        found = {write.address for write in self.inbox}
        found.update(write.address for write in self.quarantine)
        found.update(job.origin for job in self.outbound if job.origin)
        return found

    def copy_sizes(self) -> dict[str, int]:
        """Bytes the plan stores per address (inbox and quarantine copies)."""
        sizes: dict[str, int] = {}
        for address, data in [*((w.address, w.data) for w in self.inbox),
                              *((w.address, w.data) for w in self.quarantine)]:
            sizes[address] = sizes.get(address, 0) + len(data)
        return sizes

    def leave_out(self, addresses: set[str] | frozenset[str]) -> None:
        """Drop everything of ``addresses``: their copies and the jobs their rules queued,
        as if their RCPT had been refused (the caller discards files already written)."""
        self.inbox = [w for w in self.inbox if w.address not in addresses]
        self.quarantine = [w for w in self.quarantine if w.address not in addresses]
        self.outbound = [j for j in self.outbound if j.origin not in addresses]
        self.remote_forwards = [f for f in self.remote_forwards if f.owner not in addresses]

    @property
    def empty(self) -> bool:
        return not (self.inbox or self.quarantine or self.outbound)
