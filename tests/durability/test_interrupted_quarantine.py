"""A delivery killed between its commit and its renames (kill -9): a quarantined message's
index row is committed, its file still in the 迷惑メール folder's ``tmp/``.  The committed
row is the commit point, so housekeeping — run at every start — publishes the file where
the row says, and the portal's list opens it; a write that never committed is left to the
orphan sweep, and a write still in progress is not touched.  On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.delivery.housekeeping import housekeeping
from mailplane.delivery.quarantine import (
    list_quarantine,
    quarantine_dir,
    show_quarantine,
    write_item_tmp,
)
from mailplane.mailstore.maildir import UNFINISHED_SECONDS
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import QuarantineItem

ADDRESS = "taro_1@e06.example.net"

#: What a delivery process does up to its commit, then dies without renaming (kill -9).
_KILLED_AFTER_COMMIT = """
import os, sys
from datetime import UTC, datetime
from mailplane.config.settings import Settings
from mailplane.delivery.quarantine import quarantine_dir, write_item_tmp
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import QuarantineItem
settings = Settings.model_validate_json(sys.argv[1])
now = datetime.now(UTC)
pending = write_item_tmp(quarantine_dir(settings, sys.argv[2]),
                         b"Subject: spam\\r\\n\\r\\nbuy\\r\\n", now=now)
if sys.argv[3] == "commit":
    factory = make_session_factory(make_engine(settings.database_url))
    with factory() as session:
        session.add(QuarantineItem(id=sys.argv[4], address=sys.argv[2], received_at=now,
                                   sender="s@spam.example", header_from="s@spam.example",
                                   subject="spam", reason="spam", size=pending.size,
                                   path=str(pending.final_path)))
        session.commit()
os._exit(0)
"""


def killed_delivery(settings: Settings, *, commit: bool, item_id: str = "") -> None:
    """A delivery process that wrote its 迷惑メール copy and died (after its commit or
    before it)."""
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_COMMIT, settings.model_dump_json(), ADDRESS,
         "commit" if commit else "no-commit", item_id],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def files(settings: Settings, sub: str) -> list[str]:
    directory = quarantine_dir(settings, ADDRESS) / sub
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def test_a_committed_copy_left_in_tmp_by_a_killed_delivery_is_published_at_start(
    db_settings: Settings,
) -> None:
    settings = db_settings
    factory = make_session_factory(make_engine(settings.database_url))
    clock = FrozenClock()
    killed_delivery(settings, commit=True, item_id="q-killed")
    killed_delivery(settings, commit=False)  # died before its commit: no row
    # A delivery of this process, between its commit and its rename right now.
    now = datetime.now(UTC)
    live = write_item_tmp(quarantine_dir(settings, ADDRESS), b"Subject: live\r\n\r\nx\r\n",
                          now=now)
    with factory() as session:
        session.add(QuarantineItem(id="q-live", address=ADDRESS, received_at=now,
                                   sender="", header_from="", subject="live", reason="spam",
                                   size=live.size, path=str(live.final_path)))
        session.commit()
    [killed_name] = [name for name in files(settings, "tmp")
                     if name != live.tmp_path.name and _committed(factory, name)]
    assert files(settings, "new") == []

    result = housekeeping(settings, factory, clock)

    assert result.quarantine_finished == 1
    assert files(settings, "new") == [killed_name]
    assert len(files(settings, "tmp")) == 2  # the uncommitted write and the live one
    detail = show_quarantine(settings, factory, address=ADDRESS, item_id="q-killed",
                             clock=clock)
    assert detail is not None and b"buy" in detail.raw
    assert {e.id for e in list_quarantine(settings, factory, address=ADDRESS,
                                          clock=clock)} == {"q-killed", "q-live"}
    # The live delivery's file is its own to rename; a minute on, it counts as abandoned.
    os.utime(live.tmp_path, (time.time() - UNFINISHED_SECONDS - 5,) * 2)
    assert housekeeping(settings, factory, clock).quarantine_finished == 1
    assert live.final_path.is_file()


def _committed(factory: sessionmaker[Session], name: str) -> bool:
    with factory() as session:
        paths = session.scalars(select(QuarantineItem.path)).all()
    return any(path.endswith("/new/" + name) for path in paths)
