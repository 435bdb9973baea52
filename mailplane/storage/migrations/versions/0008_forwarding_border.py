"""Forwarding at the border: emitted SRS addresses, and what a forward job may do when it fails

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00

``srs_forwards`` records each SRS address mailplane emitted with the destinations it went
to, so the MX relays a bounce only for a forward that really happened (issue 20, finding 1).
``outbound_jobs`` gains ``bounce_to_sender`` (no DSN to a sender that did not authenticate,
finding 5) and ``return_to`` (the mailbox that keeps a forward that failed for good when
its keep-copy was OFF).  Jobs queued before this revision keep their old behaviour: a DSN
to the sender, nothing kept.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "srs_forwards",
        sa.Column("srs_address", sa.String(length=400), nullable=False),
        sa.Column("destination", sa.String(length=320), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("srs_address", "destination"),
    )
    op.create_index("ix_srs_forwards_expires", "srs_forwards", ["expires_at"])
    with op.batch_alter_table("outbound_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bounce_to_sender", sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column("return_to", sa.String(length=320), nullable=False,
                                      server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("outbound_jobs", schema=None) as batch_op:
        batch_op.drop_column("return_to")
        batch_op.drop_column("bounce_to_sender")
    op.drop_index("ix_srs_forwards_expires", table_name="srs_forwards")
    op.drop_table("srs_forwards")
