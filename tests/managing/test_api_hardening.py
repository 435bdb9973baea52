"""Leaks and hardening (issue 15): the state directory and database files are private, SQL
errors never print statement parameters, and browsers get headers that stop framing,
sniffing, caching of secrets and injected script."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from mailplane.config.settings import Settings
from mailplane.storage.db import make_engine
from tests.conftest import SettingsFactory
from tests.factories.api import ApiHarness


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run_cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> None:
    from mailplane.cli import main

    monkeypatch.setenv("MAILPLANE_STATE_DIR", str(settings.state_dir))
    monkeypatch.setenv("MAILPLANE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MAILPLANE_BASE_DOMAINS", '["example.net"]')
    assert main(list(argv)) == 0


def test_migrate_and_seed_create_a_private_state_dir_and_database(
        make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings()
    _run_cli(monkeypatch, settings, "migrate")
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    assert _mode(settings.state_dir) == 0o700
    assert _mode(database) == 0o600
    _run_cli(monkeypatch, settings, "seed-demo")
    assert _mode(settings.state_dir / "operator.key") == 0o600
    for name in ("mailplane.db", "mailplane.db-wal", "mailplane.db-shm"):
        path = settings.state_dir / name
        if path.exists():
            assert _mode(path) == 0o600, name


def test_files_an_older_release_left_readable_are_tightened(
        make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings()
    settings.state_dir.mkdir()
    os.chmod(settings.state_dir, 0o755)
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o644))
    os.chmod(database, 0o644)
    # An older release's process still has the database open in WAL mode: its -wal and
    # -shm were created with the database's old mode.
    older = sqlite3.connect(database)
    older.execute("PRAGMA journal_mode=WAL")
    older.execute("CREATE TABLE leftover (x)")
    older.commit()
    try:
        wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
        assert _mode(wal) == _mode(shm) == 0o644
        _run_cli(monkeypatch, settings, "migrate")
        assert _mode(settings.state_dir) == 0o700
        for path in (database, wal, shm):
            assert _mode(path) == 0o600, path
    finally:
        older.close()


def test_an_api_in_use_keeps_the_database_and_its_wal_private(api: ApiHarness) -> None:
    api.create_contract("C0001")
    api.create_address("C0001")
    database = Path(api.settings.database_url.removeprefix("sqlite:///"))
    wal = Path(f"{database}-wal")
    assert wal.exists()  # WAL mode, written just now
    for path in (database, wal, Path(f"{database}-shm")):
        assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))


def test_sql_errors_never_show_statement_parameters(db_settings: Settings) -> None:
    """An argon2 hash passed to a failing statement must not reach the error message (and
    with it the log)."""
    engine = make_engine(db_settings.database_url)
    marker = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$SECRETHASHVALUE"
    try:
        with engine.connect() as conn, pytest.raises(Exception) as raised:
            conn.execute(text("INSERT INTO contracts (customer_number) VALUES (:v)"),
                         {"v": marker})
    finally:
        engine.dispose()
    assert "SECRETHASHVALUE" not in str(raised.value)
    assert "SECRETHASHVALUE" not in repr(raised.value)


def test_portal_pages_get_a_strict_content_security_policy(api: ApiHarness) -> None:
    for path in ("/portal/", "/portal/js/app.js", "/portal/portal.css"):
        headers = api.client().get(path).headers
        policy = headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "object-src 'none'" in policy and "base-uri 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"


def test_api_answers_are_never_cached_framed_or_sniffed(api: ApiHarness) -> None:
    api.create_contract("C0001")
    created = api.operator.post("/v1/contracts/C0001/addresses",
                                json={"local_part": "taro", "subdomain": "e06",
                                      "accept_terms": True})
    refused = api.client().post("/v1/contracts/C0001/addresses", content=b"{}",
                                headers={"Content-Type": "application/json"})
    assert refused.status_code == 401
    for response in (created, refused, api.client().get("/v1/me")):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
