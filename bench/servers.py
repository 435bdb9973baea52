"""Start, probe and meter the servers under test, each in its own process (issue 6).

Server CPU is read from ``/proc/<pid>/stat`` (utime + stime, fields 14-15) summed over the
process and all its descendants, so mailplane's worker processes are counted too, plus
each one's cutime + cstime (fields 16-17: children that exited and were reaped), so
Postfix daemons that exit after ``max_use`` connections are counted too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import postfix

REPO = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, cpu seconds of it and its reaped children) of one process, or None if it is
    gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), sum(int(v) for v in fields[11:15]) / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine spent busy since boot (``/proc/stat``: user,
    nice, system, irq, softirq, steal), to tell how much other programs ran meanwhile."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and every descendant, live or reaped."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return total


@dataclass
class RunningServer:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    note: str = ""
    #: For a node whose outbound worker runs: how many jobs are still queued.
    queued_jobs: Callable[[], int] | None = None

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_ready(port: int, process: subprocess.Popen[bytes] | None,
               timeout: float = 60.0) -> None:
    """Until the server greets with 220 (or its process, if it is our child, dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"server exited with {process.returncode}: {err[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f}s")


def _spawn(name: str, argv: list[str], port: int, env: dict[str, str] | None = None,
           log: Path | None = None) -> RunningServer:
    stderr = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr,
                               env={**os.environ, **(env or {})}, cwd=REPO)
    try:
        wait_ready(port, process)
    except BaseException:
        process.kill()
        raise
    return RunningServer(name, port, process)


def start_baseline(workdir: Path, *, fast: bool = False) -> RunningServer:
    """The stock-aiosmtpd durable baseline; ``fast``: same handler on FastSMTP."""
    port = free_port()
    name = "baseline-fastsmtp" if fast else "baseline-durable"
    maildir = workdir / f"{name}-mail"
    maildir.mkdir(parents=True, exist_ok=True)
    return _spawn(name,
                  [sys.executable, "-m", "bench.baseline_durable", "--port", str(port),
                   "--maildir", str(maildir), *(["--fast"] if fast else [])], port,
                  log=workdir / f"{name}.log")


def write_mailplane_config(workdir: Path, port: int, workers: int | None,
                           database_url: str, *, all_roles: bool = False,
                           smarthost_port: int = 0, auth_nameserver: str = "none") -> Path:
    """``workers=None``: ``mx.workers`` is not set, so the configuration default applies.
    ``auth_nameserver``: where sender authentication resolves ("none" = off, as in
    ``make run``; the bench's zone server for ``mailplane-auth``).
    ``all_roles``: free loopback ports for the API, submission and POP3 too, and the
    outbound worker sends everything to ``127.0.0.1:smarthost_port`` (smtp-sink; 0 = a
    closed port, so jobs wait) with DNS pointed at a closed loopback port: nothing leaves
    the machine."""
    state = workdir / "mailplane-var"
    state.mkdir(parents=True, exist_ok=True)
    config = workdir / "mailplane.toml"
    others = ""
    if all_roles:
        others = (
            f'[api]\nhost = "127.0.0.1"\nport = {free_port()}\n'
            f'[submission]\nhost = "127.0.0.1"\nstarttls_port = {free_port()}\n'
            f"tls_port = {free_port()}\n"
            f'[pop3]\nhost = "127.0.0.1"\nport = {free_port()}\ntls_port = {free_port()}\n'
            f'[outbound]\nsmarthost = "127.0.0.1"\n'
            f"smarthost_port = {smarthost_port or free_port()}\n"
            f'dns_nameserver = "127.0.0.1:{free_port()}"\nmx_port = {free_port()}\n'
        )
    config.write_text(
        f'state_dir = "{state}"\n'
        f'database_url = "{database_url}"\n'
        'base_domains = ["example.net"]\n'
        "[mx]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        'hostname = "mx.bench.example"\n'
        + (f"workers = {workers}\n" if workers else "")
        + '[virus]\nengine = "builtin"\n'
        '[spam]\nengine = "builtin"\n'
        f'[authentication]\nnameserver = "{auth_nameserver}"\n'
        + others
    )
    return config


def start_mailplane(workdir: Path, *, workers: int | None, database_url: str,
                    name: str = "mailplane", all_roles: bool = False,
                    smarthost_port: int = 0, event_loop: str = "",
                    auth_nameserver: str = "none") -> RunningServer:
    """``mailplane serve --role mx`` (``all_roles``: ``mailplane serve``, every role in one
    node as ``make run`` starts it): the real node start-up path, in its own process."""
    port = free_port()
    config = write_mailplane_config(workdir / name, port, workers, database_url,
                                    all_roles=all_roles, smarthost_port=smarthost_port,
                                    auth_nameserver=auth_nameserver)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILPLANE_")}
    env["MAILPLANE_CONFIG"] = str(config)
    if event_loop:
        env["MAILPLANE_EVENT_LOOP"] = event_loop
    argv = [str(Path(sys.executable).parent / "mailplane"), "serve",
            *([] if all_roles else ["--role", "mx"])]
    stderr = open(workdir / f"{name}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                               cwd=REPO)
    try:
        wait_ready(port, process, timeout=120)
    except BaseException:
        process.kill()
        raise
    return RunningServer(name, port, process,
                         note=f"{workers or 'default'} worker(s)"
                              + (", every role" if all_roles else ""))


def start_smtp_sink(workdir: Path) -> RunningServer | str:
    """Postfix's C ``smtp-sink`` (accepts and discards), or the reason it is skipped."""
    binary = "/usr/sbin/smtp-sink"
    if not os.access(binary, os.X_OK):
        return "smtp-sink skipped: Debian package postfix is not installed"
    port = free_port()
    as_root = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses root otherwise
    return _spawn("smtp-sink", [binary, *as_root, f"127.0.0.1:{port}", "512"], port,
                  log=workdir / "smtp-sink.log")


@dataclass
class PostfixServer:
    """A private Postfix instance (bench/postfix.py); ``postfix -c`` starts and stops it."""

    name: str
    port: int
    instance: postfix.PostfixInstance
    note: str = ""

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.instance.master_pid)

    def stop(self) -> None:
        self.instance.stop()


def start_postfix(workdir: Path, recipients: list[str]) -> PostfixServer | str:
    """Postfix delivering into Maildirs, or the reason it is skipped."""
    reason = postfix.unavailable_reason()
    if reason:
        return f"postfix column skipped: {reason}"
    port = free_port()
    # Its daemons run as postfix and nobody: they must be able to pass through workdir.
    os.chmod(workdir, os.stat(workdir).st_mode | 0o011)
    instance = postfix.PostfixInstance(workdir / "postfix", port, recipients)
    try:
        instance.start()
        wait_ready(port, None, timeout=60)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        instance.kill()
        return f"postfix column skipped: {exc}"
    return PostfixServer("postfix", port, instance,
                         note=f"Postfix {postfix.version()}, no filters, virtual(8) into a "
                              "Maildir per recipient")

