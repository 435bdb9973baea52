"""A job queued with a delivery (forward, auto-reply, SRS return, a submission's remote
recipients): its spool file is written before the delivery transaction, its row added
inside it, and — for an auto-reply — its 24 h ledger claim decided there too."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.filters.auto_reply import REPLY_WINDOW, ReplyClaim
from mailplane.mailstore.maildir import PendingFile
from mailplane.mailstore.spool import new_job_id, write_spool_tmp
from mailplane.storage import auto_reply_ledger_repo, outbound_repo

log = logging.getLogger(__name__)

#: A hosted address's own copy of a message, already through its pipeline, waiting for
#: room in its mailbox: the queue's local transport stores it as it is.
HELD_COPY = "held_copy"
#: A forward that failed for good, back to the inbox of the address that kept no copy
#: (keep-copy OFF), stored as it is with a notice (SPEC §5: nothing is lost).
FORWARD_RETURN = "forward_return"
#: Kinds the local transport stores as they are, without the recipient's pipeline.
STORED_AS_IS = frozenset({HELD_COPY, FORWARD_RETURN})


@dataclass
class PendingJob:
    """An outbound message on its way into the queue, in two steps.

    :meth:`spool_tmp` writes the file *before* the delivery transaction starts, so no
    database write lock is ever held across an fsync; :meth:`claimed_row` gives the row
    to add inside the transaction.  ``reply_claim`` (the 24 h auto-reply ledger, SPEC §6) is claimed
    first inside the transaction: when the ledger says no, no row is added and
    :meth:`discard` removes the file afterwards; the ledger's own time is then kept in
    ``ledger_reply_at``.  ``previous_reply_at`` is what the claim replaced, so a delivery
    that fails after its commit can give the claim back (:meth:`release_claim`).
    """

    kind: str
    mail_from: str
    recipients: list[str]
    message: bytes
    reply_claim: ReplyClaim | None = None
    #: Whether a failure may be reported to ``mail_from`` (SPEC §5; the job column).
    bounce_to_sender: bool = True
    #: The mailbox that keeps the message if this forward fails for good ("" = none).
    return_to: str = ""
    job_id: str = field(default_factory=lambda: new_job_id())
    path: Path | None = None
    staged: bool = False
    ledger_reply_at: datetime | None = None
    previous_reply_at: datetime | None = None
    _tmp: Path | None = field(default=None, repr=False)

    def spool_tmp(self, spool_dir: Path, *, fsync: bool = True) -> PendingFile:
        """Write the spool file under its temporary name; the store renames many files
        into place and makes them durable together (group commit)."""
        if not self.recipients:
            raise ValueError("an outbound job needs at least one recipient")
        pending = write_spool_tmp(spool_dir, self.job_id, self.message, fsync=fsync)
        self.path = pending.final_path
        self._tmp = pending.tmp_path
        return pending

    def claimed_row(self, session: Session, *, now: datetime) -> dict[str, object] | None:
        """Run the claim and return the row for the caller to insert with others
        (``outbound_repo.add_jobs``) in the same transaction; None when refused."""
        if self.path is None:
            raise RuntimeError("spool_tmp() must run before claimed_row()")
        self.staged = False  # a retried transaction stages again from scratch
        claim = self.reply_claim
        if claim is not None:
            self.previous_reply_at = auto_reply_ledger_repo.last_reply_at(
                session, address=claim.address, sender=claim.sender)
            if not auto_reply_ledger_repo.claim_reply(
                session, address=claim.address, sender=claim.sender, now=claim.at,
                window=REPLY_WINDOW,
            ):
                log.info("auto-reply %s → %s: already replied within 24 h",
                         claim.address, claim.sender)
                self.ledger_reply_at = self.previous_reply_at
                return None
        self.staged = True
        return outbound_repo.job_row(
            job_id=self.job_id, kind=self.kind, mail_from=self.mail_from,
            recipients=self.recipients, spool_path=str(self.path), now=as_utc(now),
            bounce_to_sender=self.bounce_to_sender, return_to=self.return_to,
        )

    def release_claim(self, session: Session) -> None:
        """Give a committed ledger claim back (its delivery failed after the commit), so
        the sender's retry gets its reply (SPEC §6)."""
        claim = self.reply_claim
        if claim is not None and self.staged:
            auto_reply_ledger_repo.release_claim(
                session, address=claim.address, sender=claim.sender, claimed_at=claim.at,
                previous=self.previous_reply_at)

    def discard(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        if self.path is not None:
            self.path.unlink(missing_ok=True)
