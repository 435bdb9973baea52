"""Shared fixtures: factories that build real settings, databases and servers on free ports.

Every test gets its own state directory and SQLite database; ``pg_url`` creates a throwaway
PostgreSQL database on 127.0.0.1:5432 and drops it afterwards (skipping, with the reason,
only where no server answers).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailplane.config.settings import Settings, load_settings
from mailplane.i18n.catalogue import compile_all
from mailplane.storage.migrate import upgrade

# Every factory's fixtures, for every capability folder (tests/factories/); their asserts
# are rewritten like the tests' own.
pytest.register_assert_rewrite("tests.factories")
pytest_plugins = [
    "tests.factories.anywhere",
    "tests.factories.daemons",
    "tests.factories.api",
    "tests.factories.attack",
    "tests.factories.cluster",
    "tests.factories.dns",
    "tests.factories.flow",
    "tests.factories.mx",
    "tests.factories.node",
    "tests.factories.notices",
    "tests.factories.outbound",
    "tests.factories.pop3",
    "tests.factories.security",
    "tests.factories.signing",
    "tests.factories.submission",
]

PG_ADMIN_URL = os.environ.get("MAILPLANE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# Keep tests independent of a developer's config file or environment (MAILPLANE_TEST_*
# variables steer the tests themselves).
for _name in list(os.environ):
    if _name.startswith("MAILPLANE_") and not _name.startswith("MAILPLANE_TEST_"):
        del os.environ[_name]

# The compiled catalogues are build products (not committed): a test run compiles any
# that are missing or older than their .po, as `make locale` does.
compile_all()
os.environ["MAILPLANE_CONFIG"] = str(Path(__file__).parent / "mailplane-test.toml")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings rooted in ``tmp_path`` with cheap argon2 parameters; keyword overrides win."""

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "state_dir": str(tmp_path / "var"),
            "database_url": f"sqlite:///{tmp_path / 'var' / 'mailplane.db'}",
            "base_domains": ["example.net", "example.org"],
            "security": {"argon2_time_cost": 1, "argon2_memory_kib": 64,
                         "login_base_delay_seconds": 0},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return load_settings(**base)

    return factory


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    s = make_settings()
    upgrade(s.database_url)
    return s


def _pg_admin_engine() -> Any:
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def throwaway_pg_database() -> Iterator[str]:
    """A PostgreSQL database created for the caller and dropped afterwards (skipping, with
    the reason, where no server answers)."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    admin = _pg_admin_engine()
    name = f"mailplane_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL server answers at {PG_ADMIN_URL}: {exc.orig}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database, created and dropped around the test."""
    with throwaway_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_settings(request: pytest.FixtureRequest, make_settings: SettingsFactory) -> Settings:
    """Migrated settings on SQLite and again on PostgreSQL (storage tests run on both)."""
    if request.param == "sqlite":
        s = make_settings()
    else:
        s = make_settings(database_url=request.getfixturevalue("pg_url"))
    upgrade(s.database_url)
    return s
