"""outbound_jobs.message: small system mail kept in its job row

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:25:00

A change notice is committed with the change that caused it, in the same row, instead of
a spool file fsynced before that commit (docs/performance.md, API).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbound_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_jobs", schema=None) as batch_op:
        batch_op.drop_column("message")
