"""Rate counters of any window length: per-minute and per-day auto-reply caps

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00

``rate_counters`` gains ``window_seconds`` (3600 for the submission quotas' existing
rows): the auto-reply caps (SPEC §6, issue 20) count per minute and per day in the same
table, and the housekeeping purge keeps each row for two of its own windows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("window_seconds", sa.Integer(), nullable=False,
                                      server_default="3600"))


def downgrade() -> None:
    op.execute("DELETE FROM rate_counters WHERE window_seconds <> 3600")
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.drop_column("window_seconds")
