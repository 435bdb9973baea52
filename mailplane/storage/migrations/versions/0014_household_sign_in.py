"""Household-safe sign-in: remembered wrong passwords, portal sessions tied to credentials

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-06 10:00:00

``login_failures`` gains ``wrong_digests``: keyed digests of the last few wrong passwords
a counter saw, so a mail program that keeps sending one old password counts once (Dovecot's
auth penalty checksum; issue 22); and ``last_success_at``: a client that recently signed
in to an account is not refused because strangers locked that account.

``web_sessions`` gains ``contract_stamp`` and ``address_stamp``: digests of the password
hash the session signed in with, so a password change, a reissue or a suspension ends the
session on every node at once (issue 20).  Sessions from before this revision have no
stamp and end at their next request: the customer signs in once more.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wrong_digests", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contract_stamp", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("address_stamp", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_column("address_stamp")
        batch_op.drop_column("contract_stamp")
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_column("last_success_at")
        batch_op.drop_column("wrong_digests")
