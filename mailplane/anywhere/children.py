"""External programs a node runs for どこでもメール (Dovecot, PHP's server): started
with the node, watched, and stopped by their own PID when it stops — never by name.

Each child is the leader of a process group of its own, so stopping it reaches the
processes it forked (Dovecot's services, PHP's workers) and nothing else.  Its group id is
kept in a PID file: a node killed without stopping its children leaves them running (a
crash, ``kill -9``), and the next start ends that group first — found by the recorded id
and checked against the command line it was started with.  A child that exits while the
node runs is logged and started again after a growing pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
_RESTART_MAX_SECONDS = 60.0


class ChildFailed(RuntimeError):
    """The program exited or did not listen in time; the message has the log's end."""


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class Child:
    """One external program of the node."""

    def __init__(self, name: str, argv: Sequence[str], *, log_path: Path, pid_path: Path,
                 listens: Sequence[tuple[str, int]], env: dict[str, str] | None = None,
                 cwd: Path | None = None, user: str | int | None = None,
                 group: str | int | None = None) -> None:
        self.name = name
        self._argv = list(argv)
        self._log_path = log_path
        self._pid_path = pid_path
        self._listens = list(listens)
        self._env = env
        self._cwd = cwd
        self._user = user
        self._group = group
        self.process: subprocess.Popen[bytes] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _log_tail(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _end_leftover(self) -> None:
        """End the group a previous node left running (by the recorded id, and only if a
        process in it runs our command line)."""
        try:
            pgid = int(self._pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        expected = b"\0".join(arg.encode() for arg in self._argv)
        for pid in _group_members(pgid):
            if _cmdline(pid).rstrip(b"\0") == expected:
                log.warning("%s: ending process group %d left by a previous run", self.name,
                            pgid)
                _signal_group(pgid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
                while _group_members(pgid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                _signal_group(pgid, signal.SIGKILL)
                return

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start the program and wait until it listens (blocking: run in a thread)."""
        self._end_leftover()
        with self._log_path.open("ab") as output:
            process = subprocess.Popen(
                self._argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                env=self._env, cwd=self._cwd, user=self._user, group=self._group,
                start_new_session=True)
        self._pid_path.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ChildFailed(f"{self.name} exited with status {process.returncode}: "
                                  f"{self._log_tail()}")
            if all(_listening(host, port) for host, port in self._listens):
                return process
            time.sleep(0.05)
        _end(process)
        raise ChildFailed(f"{self.name} did not listen within {START_TIMEOUT_SECONDS:g} s: "
                          f"{self._log_tail()}")

    async def start(self) -> None:
        self.process = await asyncio.to_thread(self._spawn)
        log.info("%s started (pid %d)", self.name, self.process.pid)
        self._watch = asyncio.create_task(self._watch_loop(), name=f"watch-{self.name}")

    async def _watch_loop(self) -> None:
        pause = 1.0
        while not self._stopping:
            process = self.process
            if process is None:
                return
            status = await asyncio.to_thread(process.wait)
            if self._stopping:
                return
            log.error("%s (pid %d) exited with status %s; starting it again in %.0f s: %s",
                      self.name, process.pid, status, pause, self._log_tail()[-500:])
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RESTART_MAX_SECONDS)
            try:
                self.process = await asyncio.to_thread(self._spawn)
                log.info("%s started again (pid %d)", self.name, self.process.pid)
            except (ChildFailed, OSError) as exc:
                log.error("%s could not be started again: %s", self.name, exc)

    async def stop(self) -> None:
        """SIGTERM to the child's process group (by its PID), SIGKILL if it lingers."""
        self._stopping = True
        process = self.process
        if process is not None:
            await asyncio.to_thread(_end, process)
            self._pid_path.unlink(missing_ok=True)
            log.info("%s stopped (pid %d)", self.name, process.pid)
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch


def _group_members(pgid: int) -> list[int]:
    """PIDs whose process group is ``pgid`` (from /proc; by id, never by name)."""
    members: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_SECONDS)
    # Workers a child leaves behind (it exited first) go with its group.
    _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class NodeProgram:
    """An external program the node runs (Dovecot, PHP): its PID and its stop."""

    _child: Child | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    async def stop(self) -> None:
        if self._child is not None:
            await self._child.stop()
