"""policy change log: which address or contract each policy revision touched

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:15:00

SMTP nodes patch their policy cache from it instead of rebuilding all of it on every
settings change (docs/performance.md, control plane).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "policy_changes",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("contract_id", sa.Integer(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision"),
    )


def downgrade() -> None:
    op.drop_table("policy_changes")
