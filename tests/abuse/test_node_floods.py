"""A whole node (``mailplane serve``) under connection floods (issue 15, SPEC §8a): idle
connections from one host, more connections than the process has descriptors, the API
listener's limits, and the Maildir ``tmp/`` orphans a crash leaves.  Everything over real
sockets; the node's descriptor limit is lowered with ``prlimit(2)`` after it started."""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories.node import Node, NodeFactory

#: One host's connections: 1,500 is above the descriptor limit set below (1,024).
FLOOD = 1500


def open_many(port: int, count: int, sources: list[str]) -> list[socket.socket]:
    opened = []
    for n in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                            source_address=(sources[n % len(sources)], 0))
        except OSError:
            continue  # the kernel's backlog is full: the flood is refused there
        opened.append(sock)
    return opened


def first_line(port: int, source: str = "127.0.0.1", timeout: float = 30) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        return sock.makefile("rb").readline()


def lower_fd_limit(node: Node, limit: int) -> None:
    assert node.process is not None
    resource.prlimit(node.process.pid, resource.RLIMIT_NOFILE, (limit, limit))


@pytest.fixture
def node(node_factory: NodeFactory) -> Iterator[Node]:
    started = node_factory(MAILPLANE_API__MAX_CONNECTIONS_PER_IP="5",
                           MAILPLANE_API__GREETING_DEADLINE_SECONDS="1")
    started.start()
    yield started


def test_idle_connections_from_one_host_cannot_exhaust_the_node(node: Node) -> None:
    """1,500 idle connections from one host against a node that may open 1,024
    descriptors: the host gets its 50 sessions and 421 for the rest; MX, POP3 and the API
    keep answering everyone else."""
    lower_fd_limit(node, 1024)
    flood = open_many(node.ports["mx"], FLOOD, ["127.0.0.2"])
    try:
        assert first_line(node.ports["mx"], "127.0.0.3").startswith(b"220 ")
        assert first_line(node.ports["pop3"], "127.0.0.3").startswith(b"+OK")
        assert httpx.get(f"{node.api_url}/healthz", timeout=30).status_code == 200
        replies = [sock.makefile("rb").readline()[:9] for sock in flood[:100]]
        assert replies.count(b"421 4.7.0") >= 50
    finally:
        for sock in flood:
            sock.close()
    assert node.process is not None and node.process.poll() is None
    assert node.log_text().count("Traceback") == 0


def test_at_the_descriptor_limit_the_node_logs_once_and_recovers(node: Node) -> None:
    """Many hosts, more connections than descriptors: accept() fails with EMFILE.  The
    node logs that once per interval (not per attempt), the sessions it has keep working,
    and once the flood is gone every listener answers again."""
    lower_fd_limit(node, 400)
    with socket.create_connection(("127.0.0.1", node.ports["mx"]), timeout=30) as held:
        reader = held.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        held.sendall(b"EHLO client.example\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        sources = [f"127.0.4.{n}" for n in range(1, 101)]
        flood = open_many(node.ports["mx"], 900, sources)
        time.sleep(3)  # the node meets EMFILE for a few accept rounds
        held.sendall(b"NOOP\r\n")  # an established session is still served
        assert reader.readline().startswith(b"250")
        for sock in flood:
            sock.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if (first_line(node.ports["pop3"], timeout=5).startswith(b"+OK")
                    and first_line(node.ports["mx"], timeout=5).startswith(b"220")):
                break
        except OSError:
            pass
        time.sleep(0.5)
    else:
        raise AssertionError("the node did not recover after the flood")
    log = node.log_text()
    assert log.count("out of system resource") <= 6  # per listener, per minute at most
    assert len(log.encode()) < 2_000_000


def test_the_api_listener_limits_connections_per_ip_and_idle_connections(node: Node) -> None:
    held = [socket.create_connection(("127.0.0.1", node.ports["api"]), timeout=10,
                                     source_address=("127.0.0.5", 0)) for _ in range(5)]
    try:
        with socket.create_connection(("127.0.0.1", node.ports["api"]), timeout=10,
                                      source_address=("127.0.0.5", 0)) as extra:
            answer = extra.makefile("rb").read()
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in answer
        assert httpx.get(f"{node.api_url}/healthz", timeout=30).status_code == 200
        # Connections that never send a request are closed after the deadline (1 s).
        assert all(sock.makefile("rb").read() == b"" for sock in held)
    finally:
        for sock in held:
            sock.close()


def test_orphans_in_maildir_tmp_are_removed_at_start(node_factory: NodeFactory) -> None:
    """kill -9 between a delivery's write and its rename leaves files in ``tmp/``:
    removed once older than 36 h (maildir(5)), at start; a fresh one is left alone."""
    node = node_factory()
    tmp = node.state_dir / "mail" / "example.net" / "taro" / "tmp"
    tmp.mkdir(parents=True)
    old = [tmp / f"1700000000.M{n}P1.host,S=10" for n in range(31)]
    for path in old:
        path.write_bytes(b"partial")
        stamp = time.time() - 37 * 3600
        os.utime(path, (stamp, stamp))
    fresh = tmp / "1800000000.M1P1.host,S=10"
    fresh.write_bytes(b"being written")
    node.start()
    deadline = time.monotonic() + 30
    while any(path.exists() for path in old) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(path.exists() for path in old)
    assert fresh.exists()
    assert "removed 31 orphan file(s)" in node.log_text()


def test_orphan_sweep_leaves_everything_but_old_tmp_files(tmp_path: Path) -> None:
    from mailplane.mailstore.maildir import remove_tmp_orphans

    box = tmp_path / "example.net" / "taro"
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True)
    stamp = time.time() - 40 * 3600
    for sub in ("tmp", "new", "cur"):
        path = box / sub / "old"
        path.write_bytes(b"x")
        os.utime(path, (stamp, stamp))
    assert remove_tmp_orphans(tmp_path, now=time.time()) == 1
    assert not (box / "tmp" / "old").exists()
    assert (box / "new" / "old").exists() and (box / "cur" / "old").exists()
