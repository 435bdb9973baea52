"""How a node starts: it waits for a database that is not reachable yet instead of exiting
(issue 9), and it runs on the configured event loop."""

from __future__ import annotations

import signal
import smtplib
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL
from tests.factories.node import NodeFactory, build_node, close_node


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


@pytest.mark.parametrize("choice", ["auto", "asyncio"])
def test_the_node_runs_on_the_configured_event_loop_and_says_which(
    node_factory: NodeFactory, choice: str
) -> None:
    """``event_loop = auto`` (config/mailplane.toml) runs uvloop, a third less CPU per SMTP
    session (docs/performance.md); ``asyncio`` keeps the standard loop.  Either way the
    node serves, and its log names the loop."""
    node = node_factory(MAILPLANE_EVENT_LOOP=choice)
    node.start()
    expected = "event loop: uvloop" if choice == "auto" else "event loop: asyncio"
    assert expected in node.log_text()
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10) as smtp:
        assert smtp.noop()[0] == 250


def test_a_node_sends_from_a_process_of_its_own_and_its_crash_takes_it_along(
    node_factory: NodeFactory,
) -> None:
    """``outbound.own_process``: the outbound worker runs beside the node's own process
    (Postfix's qmgr/smtp split); ``kill -9`` of the node (its process group) ends both."""
    node = node_factory()
    node.start()
    started = next(line for line in node.log_text().splitlines() if "extra process(es)" in line)
    assert "mailplane-outbound (worker)" in started  # beside one MX process per extra CPU
    assert node.process is not None
    group = node.process.pid
    assert len(_processes_in_group(group)) >= 2  # the node, its sender (and spawn's tracker)
    node.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10  # SIGKILL is delivered at once; reaping takes a moment
    while _processes_in_group(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_in_group(group) == []


def _processes_in_group(group: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # pgrp; zombies are gone
            found.append(int(entry.name))
    return found
