"""Engine and session factory.

SQLite (WAL, foreign keys on, busy timeout) is the single-node default; the same code runs
on PostgreSQL via ``postgresql+psycopg://`` for several nodes sharing one database (SPEC §12,
issue "Several nodes on one PostgreSQL").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailplane.storage.state_dir import private_dir, private_file, tighten_files

#: Every external call has a timeout: a database that does not answer fails a connection
#: attempt after 10 s (the caller logs and retries) instead of hanging a thread, and TCP
#: keepalives notice a peer that vanished (a network partition) within about a minute.
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "application_name": "mailplane",
}
#: How long a thread waits for a pooled connection before the request fails (and is retried
#: by its loop, or answered 451/5xx) rather than queueing forever.
POOL_TIMEOUT_SECONDS = 30


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int | None = None) -> Engine:
    """An engine for ``url``.  Per process: ``pool_size`` connections kept open and
    ``max_overflow`` (default: as many again; SQLAlchemy's 10 for SQLite) in a burst.

    Statement parameters never reach a log or an error message (``hide_parameters``):
    they include password and key hashes (issue 15).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = _private_database_file(parsed.database)
        pool: dict[str, Any] = ({} if max_overflow is None or database is None
                                else {"pool_size": pool_size, "max_overflow": max_overflow})
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
            **pool,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers (the policy poller, POP3) run beside one writer; NORMAL
            # synchronous is still durable in WAL mode at commit boundaries that matter
            # to us because every commit that precedes a 250 uses FULL (see below).
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            if database is not None:
                # SQLite gives -wal and -shm the database file's mode; an older release
                # left them (and the file) 0644.
                tighten_files(database, Path(f"{database}-wal"), Path(f"{database}-shm"))

        return engine
    return create_engine(
        url,
        # Per process: ``pool_size`` kept open, as many again in a burst.  Size PostgreSQL's
        # max_connections for processes x 2 x pool_size (docs/operations.md).
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        # A connection the server dropped (restart, failover, idle kill) is tested on
        # checkout and replaced, so a lost connection costs one reconnect, not an error.
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args=POSTGRES_CONNECT_ARGS,
        hide_parameters=True,
    )


def _private_database_file(database: str | None) -> Path | None:
    """The SQLite file, created 0600 (in a 0700 directory if we create that too) before
    SQLite opens it, so its hashes are never readable by other local users."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    if not path.parent.exists():
        private_dir(path.parent)
    private_file(path)
    return path


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
