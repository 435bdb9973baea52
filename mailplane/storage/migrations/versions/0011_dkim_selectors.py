"""DKIM selectors: which keys sign mail leaving the platform, and their rotation

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-06 10:00:00

Every node reads the active selectors from here (SPEC §8b, issue 21); the private keys
are files.  A partial unique index keeps one active selector per algorithm.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dkim_selectors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("selector", sa.String(length=63), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("selector"),
    )
    op.create_index("uq_dkim_selectors_one_active", "dkim_selectors", ["algorithm"],
                    unique=True, sqlite_where=sa.text("state = 'active'"),
                    postgresql_where=sa.text("state = 'active'"))


def downgrade() -> None:
    op.drop_index("uq_dkim_selectors_one_active", table_name="dkim_selectors")
    op.drop_table("dkim_selectors")
