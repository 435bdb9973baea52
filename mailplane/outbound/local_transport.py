"""The queue's local transport: mail for hosted addresses never leaves the platform.

A real ISP delivers its own domains locally whatever public DNS says (Postfix
``virtual_mailbox_domains``).  Every queued job — forward, auto-reply, DSN, notice, digest,
virus report, submission — is split by recipient: those in a hosted domain are delivered
here, through the node's one :class:`~mailplane.delivery.local.LocalDelivery`, with each
recipient's own settings (virus, spam, deny/allow, quarantine, its own forwarding and
auto-reply) and the forwarding loop guards (``Delivered-To``, hop count) still in force;
no DNS lookup, no SRS.  The others keep the MX/smarthost path of the worker.

Outcomes, per recipient, as for a remote MX: delivered → sent; a deferral (mailbox full,
scanner down) or a failure of the store → retry later; no such hosted address (never
existed, or deleted since the job was queued — found in the snapshot, or by the
delivery's own re-check in its transaction) → failed ``5.1.1``, so the sender gets a DSN.
An address the node's policy snapshot does not know yet is looked up in the database
before it is declared unknown: one created a moment ago (the snapshot refreshes every
``mx.policy_refresh_seconds``) is retried, never bounced.
Each recipient is delivered on its own, so one full mailbox never holds back the others.
A job whose sender did not authenticate at the MX (its ``bounce_to_sender`` is False) is
delivered as from such a sender (:data:`~mailplane.mail.auth_results.
UNAUTHENTICATED_IN_QUEUE`): the recipient's auto-reply and its own forwards' DSNs do not
go back to a forged sender on this second hop either (SPEC §5, §6).

Forwards between hosted addresses are no longer queued (the delivery that received the
message expands them at once, issue 20).  What still comes here for a hosted address: a
forward to one the node did not know yet, and two kinds stored *as they are*, without
the recipient's pipeline (:data:`~mailplane.delivery.jobs.STORED_AS_IS`): a copy held
until its full mailbox has room, and a forward that failed for good coming back to the
inbox of an address whose keep-copy was OFF, with the notice that says so (SPEC §5).
"""

from __future__ import annotations

import asyncio
import errno
import logging

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.delivery.jobs import STORED_AS_IS
from mailplane.delivery.local import DeliveryDeferred, LocalDelivery
from mailplane.delivery.plan import RecipientsGone
from mailplane.mail.auth_results import UNAUTHENTICATED_IN_QUEUE
from mailplane.mail.message import MessageContext
from mailplane.mail.srs import SrsError
from mailplane.outbound.smtp_transport import RecipientResult
from mailplane.storage import addresses_repo
from mailplane.storage.outbound_repo import ClaimedJob

log = logging.getLogger(__name__)

#: The ``with`` of the Received line a local hop writes (RFC 5321 §4.4 Attdl-Protocol).
PROTOCOL = "LOCAL"
#: The listener label of metrics for mail the queue delivers locally.
LISTENER = "local"

_DEFERRED: dict[str, tuple[str, str]] = {
    "mailbox_full": ("4.2.2", "mailbox full"),
    "scanner_unavailable": ("4.3.0", "content scanner unavailable"),
}
_STORAGE_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class LocalTransport:
    def __init__(self, delivery: LocalDelivery, clock: Clock,
                 session_factory: sessionmaker[Session]) -> None:
        self.delivery = delivery
        self.clock = clock
        self.session_factory = session_factory

    def is_local(self, recipient: str) -> bool:
        return self.delivery.is_hosted(recipient)

    def envelope_sender(self, mail_from: str) -> str:
        """The sender a hosted recipient sees: one of our SRS addresses (a job queued
        before forwards to hosted addresses kept their sender) is reversed — SRS exists
        only for foreign SPF checks."""
        srs = self.delivery.srs
        if mail_from and srs.is_srs_address(mail_from):
            try:
                return srs.reverse(mail_from)
            except SrsError:
                return mail_from
        return mail_from

    async def deliver(self, job: ClaimedJob, message: bytes,
                      recipients: list[str]) -> list[RecipientResult]:
        return [await self._deliver_one(job, message, r) for r in recipients]

    async def _deliver_one(self, job: ClaimedJob, message: bytes,
                           recipient: str) -> RecipientResult:
        hostname = self.delivery.settings.mx.hostname
        policy = self.delivery.policy.snapshot.lookup(recipient)
        if policy is None or not policy.accepts_mail:
            return await self._unknown(recipient)
        ctx = MessageContext(
            mail_from=self.envelope_sender(job.mail_from), rcpt_tos=(policy.address,),
            raw=message, received_at=self.clock.now(), helo=hostname, peer_ip=None,
            queue_id=job.id[:16],
            auth=None if job.bounce_to_sender else UNAUTHENTICATED_IN_QUEUE,
        )
        try:
            if job.kind in STORED_AS_IS:
                await self.delivery.store_as_is(policy.address, [message],
                                                now=ctx.received_at)
            else:
                await self.delivery.deliver(ctx, [(policy.address, policy)],
                                            protocol=PROTOCOL, listener=LISTENER)
        except DeliveryDeferred as exc:
            status, text = _DEFERRED[exc.reason]
            return RecipientResult(recipient, "retry", status, f"452 {status} {text}")
        except RecipientsGone:  # deleted since the snapshot was loaded
            return RecipientResult(recipient, "failed", "5.1.1",
                                   f"550 5.1.1 <{recipient}>: no such mailbox here")
        except OSError as exc:
            status = "4.3.1" if exc.errno in _STORAGE_FULL else "4.3.0"
            log.error("outbound job %s: local delivery to <%s> failed: %s", job.id,
                      recipient, exc)
            return RecipientResult(recipient, "retry", status,
                                   f"451 {status} local delivery failed: "
                                   f"{exc.strerror or type(exc).__name__}")
        except Exception as exc:
            log.exception("outbound job %s: local delivery to <%s> failed", job.id, recipient)
            return RecipientResult(recipient, "retry", "4.3.0",
                                   f"451 4.3.0 local delivery failed: {type(exc).__name__}")
        return RecipientResult(recipient, "sent", "2.0.0", "250 2.0.0 delivered locally",
                               hostname)

    async def _unknown(self, recipient: str) -> RecipientResult:
        """Not in the snapshot: permanent only if the database agrees."""
        try:
            exists = await asyncio.to_thread(self._in_database, recipient)
        except Exception as exc:  # the database is away: ask again later
            log.warning("local delivery to <%s>: address lookup failed: %s", recipient, exc)
            exists = True
        if exists:
            return RecipientResult(recipient, "retry", "4.3.0",
                                   "451 4.3.0 address settings not loaded yet")
        return RecipientResult(recipient, "failed", "5.1.1",
                               f"550 5.1.1 <{recipient}>: no such mailbox here")

    def _in_database(self, recipient: str) -> bool:
        with self.session_factory() as session:
            return addresses_repo.find(session, address=recipient) is not None
