"""Group commit of directory fsyncs: concurrent callers share fsyncs, nobody returns before
an fsync that started after their call succeeded, and a failing fsync is never swallowed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mailplane.mailstore import fsync_batcher
from mailplane.mailstore.fsync_batcher import DirFsyncBatcher


def test_concurrent_callers_share_directory_fsyncs(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    release = threading.Event()
    calls: list[Path] = []

    def slow_fsync(path: Path) -> None:
        calls.append(path)
        if len(calls) == 1:
            started.set()
            release.wait(5)

    monkeypatch.setattr(fsync_batcher, "fsync_dir", slow_fsync)
    batcher = DirFsyncBatcher()
    first = threading.Thread(target=batcher.fsync_dir, args=(tmp_path,))
    first.start()
    started.wait(5)
    # Ten callers arrive while the first fsync runs: none is covered by it, one more
    # fsync (started after all their calls) covers all ten.
    waiters = [threading.Thread(target=batcher.fsync_dir, args=(tmp_path,)) for _ in range(10)]
    for thread in waiters:
        thread.start()
    deadline = time.monotonic() + 5
    while batcher.requests < 11 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for thread in [first, *waiters]:
        thread.join(5)
    assert batcher.requests == 11
    assert batcher.fsyncs == len(calls) == 2


def test_a_failed_fsync_raises_and_the_next_caller_fsyncs_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = [OSError("EIO"), None]

    def flaky(path: Path) -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(fsync_batcher, "fsync_dir", flaky)
    batcher = DirFsyncBatcher()
    with pytest.raises(OSError):
        batcher.fsync_dir(tmp_path)
    batcher.fsync_dir(tmp_path)
    assert batcher.fsyncs == 1


def test_real_directory_fsync(tmp_path: Path) -> None:
    batcher = DirFsyncBatcher()
    batcher.fsync_dir(tmp_path)
    assert batcher.fsyncs == 1
