"""A node started while its database is unreachable waits for it instead of exiting, and
serves once it answers (issue 9: a lost database connection is retried, never fatal)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL
from tests.factories.node import build_node, close_node


def test_node_started_before_its_database_waits_and_then_serves(
    tmp_path: Path, pg_url: str
) -> None:
    node = build_node(tmp_path, database_url=pg_url)  # migrates while the database is up
    assert node.log_path is not None
    database = pg_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    errors: list[BaseException] = []
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :db"), {"db": database})

        def start() -> None:
            try:
                node.start()
            except BaseException as exc:
                errors.append(exc)

        starter = threading.Thread(target=start)
        starter.start()
        deadline = time.monotonic() + 30
        while not node.log_path.exists() or "database not reachable at start-up" not in \
                node.log_text():
            assert time.monotonic() < deadline, node.log_text()[-2000:]
            assert node.process is None or node.process.poll() is None, node.log_text()
            time.sleep(0.2)
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        starter.join(90)
        assert not errors, errors
        assert node.api().get("/v1/contracts/NONE").status_code == 404
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        close_node(node)
