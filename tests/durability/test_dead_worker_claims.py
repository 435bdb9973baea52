"""Claims of a dead worker of this host are taken back without waiting for the lease,
also when the dead worker is an unreaped zombie (a crashed node's orphaned sender)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from mailplane.outbound.worker import _pid_alive


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_zombie_is_not_alive_and_a_running_process_is() -> None:
    running = subprocess.Popen(["sleep", "30"])
    finished = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while _state(finished.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)  # exited, not reaped: a zombie until wait()
        assert _state(finished.pid) == "Z"
        assert _pid_alive(finished.pid) is False
        assert _pid_alive(running.pid) is True
    finally:
        running.kill()
        running.wait()
        finished.wait()
    assert _pid_alive(finished.pid) is False  # reaped: gone
