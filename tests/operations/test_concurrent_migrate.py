"""Issue 9: ``mailplane migrate`` is safe to run from any node, even from two at once —
one takes the PostgreSQL advisory lock and migrates, the other waits and finds nothing
left to do (mailplane/storage/migrations/env.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from mailplane.storage.migrate import alembic_config
from mailplane.storage.models import Base

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres


def test_two_concurrent_migrations_of_a_fresh_database_both_succeed_at_head(
    pg_url: str, tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILPLANE_")}
    env.update({"MAILPLANE_DATABASE_URL": pg_url, "MAILPLANE_STATE_DIR": str(tmp_path),
                "MAILPLANE_CONFIG": str(REPO / "config" / "mailplane.toml")})
    processes = [
        subprocess.Popen([sys.executable, "-m", "mailplane.cli", "migrate"], env=env,
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert [code for code, _out, _err in results] == [0, 0], results

    head = ScriptDirectory.from_config(alembic_config(pg_url)).get_current_head()
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert versions == [(head,)]
    assert set(Base.metadata.tables) <= tables
