"""The auto-reply's effects in one place (SPEC §6, RFC 3834 §2, issue 20): Mailman's
``handlers/replybot.py`` — grace period, build, send, record — for several processes and
nodes sharing one database.  Whether a message deserves a reply at all is the verdict of
:class:`~mailplane.filters.auto_reply.AutoReplyStep`; everything after it is here, and
``delivery/`` only calls the hooks of :class:`ReplyClaim` (``delivery.jobs.JobCondition``).

1. **Grace period and build** (:meth:`AutoReplyGate.reply`, while the message is planned):
   a sender this process knows was answered within 24 h, or an address this process has
   just seen over its cap, costs nothing more; otherwise the reply is built
   (:func:`~mailplane.filters.auto_reply.build_reply`) with its :class:`ReplyClaim`.
2. **Claim** (:meth:`ReplyClaim.claim`, inside the transaction that stores the message):
   the ledger's once-per-sender-per-24-h upsert (L4529,
   ``storage.auto_reply_ledger_repo``), then the address's caps, whoever the senders —
   ``outbound.auto_reply_max_per_minute`` (sliding) and ``auto_reply_max_per_day`` —
   counted in ``rate_counters`` for every node.  Refused: no job row; the message itself
   is stored all the same.  A burst of forged senders draws at most the caps' worth of
   the customer's text.
3. **Release** (:meth:`ReplyClaim.release`): the delivery failed after its commit (the
   sender gets 451 and retries), so the ledger row goes back and the caps are refunded:
   the allowance is spent only on a reply really queued (SPEC §6, issue 14).
4. **Record** (:meth:`ReplyClaim.settle`, once the delivery is durable): the outcome is
   counted (``mailplane_auto_replies_total``) and remembered for step 1.

The memory only avoids work: it holds what the database decided — a reply time the
ledger recorded, a cap refusal for at most :data:`CAP_MEMORY` — so it never sends a reply
the database would refuse, and never withholds one for longer than that.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import TypeVar

from sqlalchemy.orm import Session

from mailplane import metrics
from mailplane.config.sections import OutboundConfig
from mailplane.config.settings import Settings
from mailplane.filters.auto_reply import build_reply, reply_subject
from mailplane.mail.message import MessageContext
from mailplane.net.throttled_log import ThrottledLog
from mailplane.storage import auto_reply_ledger_repo as ledger
from mailplane.storage import rate_counter_repo

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)
_K = TypeVar("_K")
_V = TypeVar("_V")

#: At most one reply per sender per 24 hours, per address (L4529).
REPLY_WINDOW = timedelta(hours=24)
#: How long a process skips building replies for an address the caps refused.
CAP_MEMORY = timedelta(minutes=1)
#: Entries of either memory before it is emptied (bounded memory; the database decides).
MAX_REMEMBERED = 100_000


@dataclass(frozen=True, slots=True)
class ReplyCap:
    """One cap on the replies of one address, whoever the senders (RFC 3834 §2)."""

    outcome: str  # the metric's outcome label when it refuses
    seconds: int
    limit: int

    def key(self, address: str) -> str:
        return f"auto-reply:{self.seconds}:{address.lower()}"


def reply_caps(config: OutboundConfig) -> tuple[ReplyCap, ...]:
    """The configured caps; a limit of 0 is no cap."""
    caps = (ReplyCap("capped_minute", 60, config.auto_reply_max_per_minute),
            ReplyCap("capped_day", 86_400, config.auto_reply_max_per_day))
    return tuple(cap for cap in caps if cap.limit > 0)


@dataclass(eq=False)
class ReplyClaim:
    """What a queued reply depends on, decided in the delivery transaction: the ledger
    claim and the cap charges (the ``JobCondition`` of its job)."""

    gate: AutoReplyGate = field(repr=False)
    address: str
    sender: str
    at: datetime
    #: pending → queued | replied_recently | capped_minute | capped_day (→ released).
    outcome: str = "pending"
    #: The ledger's reply time before this claim (given back on release; after a refused
    #: claim, the time of the reply that won).
    previous: datetime | None = None

    def claim(self, session: Session) -> bool:
        """In the delivery transaction: True when the reply may be queued."""
        return self.gate.claim(session, self)

    def release(self, session: Session) -> None:
        """The delivery failed after its commit: give the claim and the charges back."""
        self.gate.release(session, self)

    def settle(self) -> None:
        """The delivery is durable: count and remember what the database decided."""
        self.gate.settle(self)


@dataclass(frozen=True, slots=True)
class QueuedReply:
    """A built reply for the queue: its envelope, its bytes and its claim."""

    mail_from: str
    recipient: str
    message: bytes
    claim: ReplyClaim


class AutoReplyGate:
    """One per :class:`~mailplane.delivery.local.LocalDelivery` (per process)."""

    def __init__(self, *, caps: tuple[ReplyCap, ...], hostname: str, tz: tzinfo,
                 from_address: bool = False, window: timedelta = REPLY_WINDOW) -> None:
        self._caps = caps
        self._hostname = hostname
        self._tz = tz
        self._from_address = from_address
        self._window = window
        self._replied: dict[tuple[str, str], datetime] = {}
        self._capped: dict[str, tuple[datetime, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AutoReplyGate:
        return cls(caps=reply_caps(settings.outbound), hostname=settings.mx.hostname,
                   tz=settings.tz,
                   from_address=settings.outbound.auto_reply_envelope_sender == "address")

    # --- 1. grace period and build ----------------------------------------------------

    def replied_recently(self, address: str, sender: str, now: datetime) -> bool:
        """This process knows the ledger recorded a reply to ``sender`` within 24 h."""
        with self._lock:
            at = self._replied.get((address.lower(), sender.lower()))
        return at is not None and now - at < self._window

    def capped(self, address: str, now: datetime) -> str | None:
        """The cap that refused ``address`` in this process less than :data:`CAP_MEMORY`
        ago (its outcome label), or None."""
        with self._lock:
            found = self._capped.get(address.lower())
        return found[1] if found is not None and now < found[0] else None

    def reply(self, ctx: MessageContext, address: str, body: str) -> QueuedReply | None:
        """The reply to ``ctx`` from ``address`` with its claim, or None when this process
        already knows the database would refuse it (counted like a refusal there)."""
        sender = ctx.envelope_sender
        now = ctx.received_at
        known = ("replied_recently" if self.replied_recently(address, sender, now)
                 else self.capped(address, now))
        if known is not None:
            metrics.AUTO_REPLIES.labels(known).inc()
            return None
        message = build_reply(
            address=address, sender=sender, original_headers=ctx.headers, body=body,
            hostname=self._hostname, now=now, tz=self._tz,
            subject=reply_subject(ctx.subject))  # decoded from the raw line: 8-bit survives
        return QueuedReply(mail_from=address if self._from_address else "",
                           recipient=sender, message=message,
                           claim=ReplyClaim(self, address, sender, now))

    # --- 2. claim, 3. release (in the delivery's transaction) --------------------------

    def claim(self, session: Session, claim: ReplyClaim) -> bool:
        """The ledger first (a repeat sender never spends the caps), then each cap; a
        cap that refuses gives the ledger row back in the same transaction."""
        claim.outcome = "pending"  # a retried transaction claims again from scratch
        claim.previous = ledger.last_reply_at(session, address=claim.address,
                                              sender=claim.sender)
        if not ledger.claim_reply(session, address=claim.address, sender=claim.sender,
                                  now=claim.at, window=self._window):
            claim.outcome = "replied_recently"
            return False
        over = self._charge(session, claim)
        if over is not None:
            ledger.release_claim(session, address=claim.address, sender=claim.sender,
                                 claimed_at=claim.at, previous=claim.previous)
            claim.outcome = over.outcome
            return False
        claim.outcome = "queued"
        return True

    def _charge(self, session: Session, claim: ReplyClaim) -> ReplyCap | None:
        """Charge one reply to every cap; the cap it would pass (all refunded), or None.

        Added first and compared after (one upsert each): of concurrent claims on every
        node, each sees a distinct count, so the caps hold exactly."""
        now = claim.at.timestamp()
        charged: list[ReplyCap] = []
        for cap in self._caps:
            estimate = rate_counter_repo.charge(session, key=cap.key(claim.address),
                                                seconds=cap.seconds, now=now, amount=1)
            charged.append(cap)
            if estimate > cap.limit:
                self._refund(session, claim, charged)
                return cap
        return None

    def _refund(self, session: Session, claim: ReplyClaim, caps: list[ReplyCap]) -> None:
        now = claim.at.timestamp()
        for cap in caps:
            start, _weight = rate_counter_repo.window_of(now, cap.seconds)
            rate_counter_repo.subtract(session, key=cap.key(claim.address),
                                       window_start=start, amount=1)

    def release(self, session: Session, claim: ReplyClaim) -> None:
        if claim.outcome != "queued":
            return
        ledger.release_claim(session, address=claim.address, sender=claim.sender,
                             claimed_at=claim.at, previous=claim.previous)
        self._refund(session, claim, list(self._caps))
        claim.outcome = "released"

    # --- 4. record (after the delivery is durable) -------------------------------------

    def settle(self, claim: ReplyClaim) -> None:
        outcome = claim.outcome
        if outcome in ("pending", "released"):
            return  # never decided (its recipient was not stored), or given back
        metrics.AUTO_REPLIES.labels(outcome).inc()
        key = (claim.address.lower(), claim.sender.lower())
        if outcome == "queued":
            self._remember(self._replied, key, claim.at)
        elif outcome == "replied_recently":
            log.info("auto-reply %s → %s: already replied within 24 h",
                     claim.address, claim.sender)
            if claim.previous is not None:  # the reply that won, on any node
                self._remember(self._replied, key, claim.previous)
        else:
            _throttled.warning(("capped", claim.address), "auto-reply of %s to %s not sent: "
                               "over its %s cap (the mail is delivered)", claim.address,
                               claim.sender, outcome.removeprefix("capped_"))
            self._remember(self._capped, claim.address.lower(),
                           (claim.at + CAP_MEMORY, outcome))

    def _remember(self, memory: dict[_K, _V], key: _K, value: _V) -> None:
        with self._lock:
            if len(memory) >= MAX_REMEMBERED:
                memory.clear()  # bounded memory; the database still decides
            memory[key] = value
