"""API hardening: address ids never reused, fast API key digests, sealed replays

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01 10:00:00

- ``addresses`` on SQLite becomes ``AUTOINCREMENT``: without it SQLite hands the id of the
  newest deleted address to the next one, and a mailbox-scoped API key of the deleted
  address would reach the new one (issue 15).  PostgreSQL ids come from a sequence and
  are never reused, so nothing changes there.
- ``api_keys.secret_digest``: a keyed SHA-256 of the random key secret, checked in
  microseconds (argon2 on every wrong key let an unauthenticated flood take the CPU).
  Existing keys keep their argon2 hash and keep working: the first successful use stores
  the digest and clears the argon2 hash (``auth/api_keys.py``).  ``secret_hash`` becomes
  nullable, since new keys have none.
- ``idempotency_keys``: stored replays are now sealed (AES-GCM) and hold the initial
  password; rows written by older releases hold neither and are dropped (they live a
  day; a retry of such a request gets 409 address_taken instead of a replay).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # A table rebuild (env.py turns foreign keys off around migrations, so dropping
        # the old table cascades nowhere).
        with op.batch_alter_table("addresses", recreate="always",
                                  table_kwargs={"sqlite_autoincrement": True}):
            pass
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret_digest", sa.String(length=64), nullable=True))
        batch_op.alter_column("secret_hash", existing_type=sa.String(length=255),
                              nullable=True)
    op.execute(sa.text("DELETE FROM idempotency_keys"))


def downgrade() -> None:
    # Keys issued under 0005 have no argon2 hash and stop working after a downgrade.
    op.execute(sa.text("UPDATE api_keys SET secret_hash = '' WHERE secret_hash IS NULL"))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column("secret_hash", existing_type=sa.String(length=255),
                              nullable=False)
        batch_op.drop_column("secret_digest")
    op.execute(sa.text("DELETE FROM idempotency_keys"))
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("addresses", recreate="always",
                                  table_kwargs={"sqlite_autoincrement": False}):
            pass
