"""Where an address's mail lives on disk: ``<root>/<domain>/<local part>/`` (SPEC §8).

One function so the MX service, POP3, the API's delete and the Dovecot export agree.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def mailbox_dir(root: Path, address: str) -> Path:
    local, _, domain = address.lower().rpartition("@")
    if not local or not domain or "/" in address or address.startswith("."):
        raise ValueError(f"not a hosted address: {address!r}")
    return root / domain / local


def remove_tree(path: Path) -> None:
    """Rename first (atomic: the mailbox disappears at once), then delete at leisure."""
    if not path.exists():
        return
    doomed = path.with_name(f".deleted-{path.name}-{uuid.uuid4().hex[:8]}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
