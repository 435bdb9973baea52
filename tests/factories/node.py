"""A whole node as a separate process: ``mailplane serve`` on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Node:
    env: dict[str, str]
    api_url: str
    ports: dict[str, int]
    state_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    operator_key: str = ""
    clients: list[httpx.Client] = field(default_factory=list)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mailplane.cli", *args], env=self.env,
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    def start(self) -> None:
        assert self.log_path is not None
        log = self.log_path.open("ab")
        # Its own process group: kill -9 takes the node's extra processes (the outbound
        # worker's, extra MX ones) with it, as a crash or power loss would.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailplane.cli", "serve"], env=self.env, cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    with smtplib.SMTP("127.0.0.1", self.ports["mx"], timeout=5) as smtp:
                        smtp.noop()
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"node did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        if sig == signal.SIGKILL:  # the whole node at once, like a crash
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)

    def api(self, key: str | None = None) -> httpx.Client:
        client = httpx.Client(base_url=self.api_url, timeout=30,
                              headers={"Authorization": f"Bearer {key or self.operator_key}"})
        self.clients.append(client)
        return client

    def settle(self, seconds: float = 20.0) -> None:
        """Wait until the node's SMTP decisions use the settings written so far: its
        ``/healthz`` reports the policy revision its cache holds; compare it with the
        database's (RCPT accepting an address says nothing about its other settings)."""
        from mailplane.storage.db import make_engine, make_session_factory
        from mailplane.storage.policy_loader import read_revision

        engine = make_engine(self.env["MAILPLANE_DATABASE_URL"])
        try:
            with make_session_factory(engine)() as session:
                revision = read_revision(session)
        finally:
            engine.dispose()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            health = httpx.get(f"{self.api_url}/healthz", timeout=5).json()
            if health.get("policy_revision", 0) >= revision:
                return
            time.sleep(0.05)
        raise AssertionError(f"node still below policy revision {revision} after {seconds} s")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


NodeFactory = Callable[..., Node]


def build_node(base: Path, database_url: str | None = None, name: str = "node",
               state_dir: Path | None = None, **env_extra: Any) -> Node:
    """A migrated node (not started) under ``base``, with an operator key; usable outside
    pytest (the soak run in ``tests/durability/soak.py``).  Several nodes may share one
    ``database_url`` (PostgreSQL) and one ``state_dir`` (the Maildir volume and spool).

    One MX process unless a test asks for more (``MAILPLANE_MX__WORKERS``): each MX
    process polls its own policy cache, so a probe that one process accepts a new address
    says nothing about the other (tests/abuse/test_node_connection_limits.py and
    tests/performance/test_mx_workers.py run several), and every node starts faster."""
    state = state_dir or base / name
    ports = {k: free_port() for k in ("api", "mx", "sub", "subtls", "pop3", "pop3tls")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILPLANE_")}
    env.update({
        "MAILPLANE_CONFIG": str(REPO / "config" / "mailplane.toml"),
        "MAILPLANE_STATE_DIR": str(state),
        "MAILPLANE_DATABASE_URL": database_url or f"sqlite:///{state / 'mailplane.db'}",
        "MAILPLANE_BASE_DOMAINS": '["example.net"]',
        "MAILPLANE_API__PORT": str(ports["api"]),
        "MAILPLANE_MX__PORT": str(ports["mx"]),
        "MAILPLANE_MX__POLICY_REFRESH_SECONDS": "0.5",
        "MAILPLANE_MX__WORKERS": "1",
        "MAILPLANE_SUBMISSION__STARTTLS_PORT": str(ports["sub"]),
        "MAILPLANE_SUBMISSION__TLS_PORT": str(ports["subtls"]),
        "MAILPLANE_POP3__PORT": str(ports["pop3"]),
        "MAILPLANE_POP3__TLS_PORT": str(ports["pop3tls"]),
        "MAILPLANE_SECURITY__ARGON2_MEMORY_KIB": "64",
        "MAILPLANE_SECURITY__ARGON2_TIME_COST": "1",
        # Nothing may depend on public DNS: made-up destination domains (mobile.example.jp)
        # would be NXDOMAIN there (the check has tests of its own, on a DNS stub).
        "MAILPLANE_FORWARDING__CHECK_DESTINATION_DOMAINS": "false",
        # Dovecot and Roundcube only where a test asks for them (tests/factories/anywhere.py).
        "MAILPLANE_IMAP__ENABLED": "false",
        "MAILPLANE_WEBMAIL__ENABLED": "false",
        **{k: str(v) for k, v in env_extra.items()},
    })
    node = Node(env=env, api_url=f"http://127.0.0.1:{ports['api']}", ports=ports,
                state_dir=state, log_path=base / f"{name}.log")
    migrated = node.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    key = node.cli("create-api-key", "--role", "operator")
    assert key.returncode == 0, key.stderr
    node.operator_key = key.stdout.strip()
    return node


def close_node(node: Node) -> None:
    for client in node.clients:
        client.close()
    node.stop(signal.SIGKILL)


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    nodes: list[Node] = []

    def factory(database_url: str | None = None, name: str = "node",
                state_dir: Path | None = None, **env_extra: Any) -> Node:
        node = build_node(tmp_path, database_url, name, state_dir, **env_extra)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        close_node(node)
