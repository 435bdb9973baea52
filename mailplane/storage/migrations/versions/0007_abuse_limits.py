"""Limits under abuse: growing IP locks for logins, hourly submission quota counters

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:00:00

``login_failures`` gains ``in_flight`` (attempts counted before their password is
checked), ``lock_count`` (each IP lock doubles) and ``last_failure_at`` (when a counter
may be forgotten); ``rate_counters`` holds the per-account and per-IP
submission quotas shared by every node (SPEC §8a, issue 15).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("in_flight", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("lock_count", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("last_failure_at", sa.DateTime(timezone=True),
                                      nullable=True))
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start"),
    )


def downgrade() -> None:
    op.drop_table("rate_counters")
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_column("last_failure_at")
        batch_op.drop_column("lock_count")
        batch_op.drop_column("in_flight")
