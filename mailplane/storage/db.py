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


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
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

        return engine
    return create_engine(
        url,
        # Per process: ``pool_size`` kept open, as many again in a burst.  Size PostgreSQL's
        # max_connections for processes x 2 x pool_size (docs/operations.md).
        pool_size=pool_size,
        max_overflow=pool_size,
        # A connection the server dropped (restart, failover, idle kill) is tested on
        # checkout and replaced, so a lost connection costs one reconnect, not an error.
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args=POSTGRES_CONNECT_ARGS,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
