"""A job queued with a delivery (forward, auto-reply, SRS return, DSN, a submission's remote
recipients): its spool file is written before the delivery transaction, its row added
inside it — and, for a job with a :class:`JobCondition` (an auto-reply's 24 h gate and
caps), only when the condition is claimed there too."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.mailstore.maildir import PendingFile
from mailplane.mailstore.spool import new_job_id, write_spool_tmp
from mailplane.storage import outbound_repo


class JobCondition(Protocol):
    """What a job's row depends on, decided inside the delivery transaction.  The rule
    that sets one keeps all of its effects (the auto-reply's:
    :class:`mailplane.filters.auto_reply_gate.ReplyClaim`); the store only calls these."""

    def claim(self, session: Session) -> bool:
        """In the delivery transaction: True to add the job's row."""
        ...

    def release(self, session: Session) -> None:
        """The delivery failed after its commit: undo what :meth:`claim` wrote."""
        ...

    def settle(self) -> None:
        """The delivery is durable (whatever the claim gave)."""
        ...


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
    to add inside the transaction.  A ``condition`` is claimed first inside the
    transaction: when it says no, no row is added and :meth:`discard` removes the file
    afterwards; a delivery that fails after its commit gives the claim back
    (:meth:`release_claim`).  ``origin`` is the hosted recipient whose rule queued the job
    (its forward, its auto-reply): a recipient that is not stored after all (deleted, or
    its mailbox full) takes its jobs with it.  Empty: a job of the whole message.
    """

    kind: str
    mail_from: str
    recipients: list[str]
    message: bytes
    condition: JobCondition | None = None
    #: The hosted recipient whose rules queued this job: left out with it (deleted or full).
    origin: str = ""
    #: Whether a failure may be reported to ``mail_from`` (SPEC §5; the job column).
    bounce_to_sender: bool = True
    #: The mailbox that keeps the message if this forward fails for good ("" = none).
    return_to: str = ""
    job_id: str = field(default_factory=lambda: new_job_id())
    path: Path | None = None
    staged: bool = False
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
        if self.condition is not None and not self.condition.claim(session):
            return None
        self.staged = True
        return outbound_repo.job_row(
            job_id=self.job_id, kind=self.kind, mail_from=self.mail_from,
            recipients=self.recipients, spool_path=str(self.path), now=as_utc(now),
            bounce_to_sender=self.bounce_to_sender, return_to=self.return_to,
        )

    def release_claim(self, session: Session) -> None:
        """Give a committed claim back (the delivery failed after the commit), so the
        sender's retry gets its reply (SPEC §6)."""
        if self.condition is not None and self.staged:
            self.condition.release(session)

    def discard(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        if self.path is not None:
            self.path.unlink(missing_ok=True)
