"""mx.durability: which way a batch is made durable, and when "auto" stays with fsync."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailplane.mailstore import durability
from mailplane.mailstore.durability import filesystem_type, syncfs_supported, use_syncfs


def test_fsync_is_always_honoured() -> None:
    assert use_syncfs("fsync", [Path("/")]) is False


def test_auto_uses_syncfs_on_a_local_filesystem_where_the_kernel_reports_errors(
    tmp_path: Path,
) -> None:
    assert filesystem_type(tmp_path) != ""
    assert use_syncfs("auto", [tmp_path]) is syncfs_supported()


def test_auto_stays_with_fsync_on_a_network_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(durability, "syncfs_supported", lambda: True)
    monkeypatch.setattr(durability, "filesystem_type",
                        lambda path: "nfs4" if path.name == "spool" else "ext4")
    assert use_syncfs("auto", [tmp_path / "mail", tmp_path / "spool"]) is False
    assert use_syncfs("auto", [tmp_path / "mail"]) is True
    assert use_syncfs("syncfs", [tmp_path / "spool"]) is True  # the operator's choice


def test_an_old_kernel_never_gets_syncfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before Linux 5.8 syncfs returned 0 even when writeback failed."""
    monkeypatch.setattr(durability, "_kernel_version", lambda: (5, 4))
    assert syncfs_supported() is False
    assert use_syncfs("syncfs", [Path("/")]) is False
    assert use_syncfs("auto", [Path("/")]) is False
