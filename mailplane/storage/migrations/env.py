"""Alembic environment.  Run through ``mailplane migrate`` (see mailplane.storage.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from mailplane.storage.db import make_engine
from mailplane.storage.models import Base

#: Any constant: every node contending to migrate takes the same PostgreSQL advisory lock,
#: so one wins and the others wait, then find nothing left to do.
MIGRATION_LOCK_ID = 0x6D61696C


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        is_sqlite = connection.dialect.name == "sqlite"
        if is_sqlite:
            # A batch migration rebuilds a table (create, copy, drop, rename); with foreign
            # keys on, the drop would cascade-delete every row that refers to it.  The
            # pragma only takes effect outside a transaction, hence here; the check below
            # proves the rebuilt tables still satisfy every constraint.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=is_sqlite,
            )
            with context.begin_transaction():
                context.run_migrations()
                if is_sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"foreign keys broken by the migration: {broken}")
        finally:
            if is_sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
            if is_postgres:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
                connection.commit()
    engine.dispose()


run_migrations_online()
