"""The policy revision every settings write bumps (DESIGN "Keeping the SMTP path fast")."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from mailplane.storage.models import PolicyRevision


def bump_revision(session: Session) -> None:
    """Call inside the transaction that changes a setting, so both commit together."""
    session.execute(
        update(PolicyRevision).where(PolicyRevision.id == 1).values(
            revision=PolicyRevision.revision + 1
        )
    )
