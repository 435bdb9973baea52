"""The account around the settings: one-time codes, 解約, paid-slot purchases

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 10:00:00

``account_codes`` holds the keyed digests of the codes mailed for password recovery and a
contact address change (SPEC §9a); ``contracts`` gains the 解約 request and the end of the
contract (003 Art.18-20); ``slot_purchases`` records each paid address slot bought, the
billing record of 料金明細 (004 L474-485).  Paid slots that exist already become open
purchases dated now, at the default 330 yen (the charge configured before this revision
was not recorded anywhere).
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The configured default charge (``addresses.extra_monthly_charge_yen``) at this revision.
DEFAULT_MONTHLY_YEN = 330


def upgrade() -> None:
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        for name in ("termination_effective_at", "termination_requested_at",
                     "terminated_at", "purged_at"):
            batch_op.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "account_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("new_value", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_account_codes_contract", "account_codes", ["contract_id", "purpose"])
    purchases = op.create_table(
        "slot_purchases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contract_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("monthly_yen", sa.Integer(), nullable=False),
        sa.Column("purchased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_slot_purchases_contract", "slot_purchases",
                    ["contract_id", "purchased_at"])
    connection = op.get_bind()
    rows = connection.execute(sa.text(
        "SELECT id, extra_slots FROM contracts WHERE extra_slots > 0")).all()
    now = datetime.now(UTC)
    op.bulk_insert(purchases, [
        {"contract_id": contract_id, "address": "", "monthly_yen": DEFAULT_MONTHLY_YEN,
         "purchased_at": now, "ended_at": None}
        for contract_id, extra in rows for _ in range(int(extra))
    ])


def downgrade() -> None:
    op.drop_index("ix_slot_purchases_contract", table_name="slot_purchases")
    op.drop_table("slot_purchases")
    op.drop_index("ix_account_codes_contract", table_name="account_codes")
    op.drop_table("account_codes")
    with op.batch_alter_table("contracts", schema=None) as batch_op:
        for name in ("purged_at", "terminated_at", "termination_requested_at",
                     "termination_effective_at"):
            batch_op.drop_column(name)
