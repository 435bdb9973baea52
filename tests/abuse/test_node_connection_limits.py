"""Connection limits per node, not per process (issue 20, SPEC §8a; Postfix's anvil is one
per instance): with ``mx.workers = 2`` the kernel spreads one client's connections over
both MX processes, and the per-IP limit still holds for the node; a process killed with
``kill -9`` leaks none of its counts.  The node tests run ``mailplane serve`` over real
sockets; the unit tests use the counts file from several real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailplane.net.anvil import BUCKETS, NodeCounts, create_counts_file
from mailplane.net.limits import ConnectionLimiter, ConnectionLimits, Refusal, Ticket
from tests.factories.node import Node, NodeFactory

PER_IP = 4


# --- the counts file ---------------------------------------------------------------------


@pytest.fixture
def counts_file() -> Iterator[Path]:
    path = create_counts_file(rows=4)
    yield path
    path.unlink(missing_ok=True)


def test_the_file_is_private_and_sized_for_its_rows(counts_file: Path) -> None:
    assert counts_file.stat().st_mode & 0o777 == 0o600
    assert counts_file.stat().st_size > 4 * BUCKETS * 16


def test_two_processes_share_one_per_ip_limit(counts_file: Path) -> None:
    """Two limiters on one file (as two MX processes): the fifth connection of a client
    is refused whichever process accepts it."""
    limits = ConnectionLimits("mx", max_connections=100, max_per_ip=PER_IP)
    first = ConnectionLimiter(limits, counts=NodeCounts(counts_file))
    second = ConnectionLimiter(limits, counts=NodeCounts(counts_file))
    tickets = [first.admit("192.0.2.7"), second.admit("192.0.2.7"),
               first.admit("192.0.2.7"), second.admit("192.0.2.7")]
    assert all(isinstance(t, Ticket) for t in tickets)
    assert first.admit("192.0.2.7") is Refusal.IP_CONNECTIONS
    assert second.admit("192.0.2.7") is Refusal.IP_CONNECTIONS
    assert isinstance(second.admit("192.0.2.8"), Ticket)  # another client is served
    assert first.active == second.active == 5
    tickets[0].release()  # a place given back by one process is a place in the other
    assert isinstance(second.admit("192.0.2.7"), Ticket)


def test_the_rate_limit_counts_admissions_of_every_process(counts_file: Path) -> None:
    now = [1000.0]
    limits = ConnectionLimits("mx", 100, 100, rate_per_ip_per_minute=3)
    first = ConnectionLimiter(limits, counts=NodeCounts(counts_file), clock=lambda: now[0])
    second = ConnectionLimiter(limits, counts=NodeCounts(counts_file), clock=lambda: now[0])
    for limiter in (first, second, first):
        ticket = limiter.admit("192.0.2.9")
        assert isinstance(ticket, Ticket)
        ticket.release()
    assert second.admit("192.0.2.9") is Refusal.IP_RATE
    now[0] += 120  # two windows later the client is welcome again
    assert isinstance(second.admit("192.0.2.9"), Ticket)


_HOLDER = """
import sys, time
from pathlib import Path
from mailplane.net.limits import ConnectionLimiter, ConnectionLimits
from mailplane.net.anvil import NodeCounts
limiter = ConnectionLimiter(ConnectionLimits("mx", 100, 4), counts=NodeCounts(Path(sys.argv[1])))
held = [limiter.admit("192.0.2.7") for _ in range(3)]
print("holding", flush=True)
time.sleep(60)
"""


def test_counts_of_a_killed_process_do_not_leak(counts_file: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(counts_file)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        limiter = ConnectionLimiter(ConnectionLimits("mx", 100, PER_IP),
                                    counts=NodeCounts(counts_file))
        assert limiter.per_ip("192.0.2.7") == 3
        assert isinstance(limiter.admit("192.0.2.7"), Ticket)
        assert limiter.admit("192.0.2.7") is Refusal.IP_CONNECTIONS
        holder.send_signal(signal.SIGKILL)  # not reaped yet: a zombie counts nothing either
        deadline = time.monotonic() + 5  # liveness is re-checked every second
        while limiter.per_ip("192.0.2.7") != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert limiter.per_ip("192.0.2.7") == 1 and limiter.active == 1
        assert isinstance(limiter.admit("192.0.2.7"), Ticket)
        # The dead process's row is free again for the next process to start.
        again = [NodeCounts(counts_file) for _ in range(3)]
        for counts in again:
            counts.close()
        holder.wait(10)
    finally:
        holder.kill()
        holder.wait()


def test_a_file_left_by_a_killed_node_is_removed_by_the_next_start() -> None:
    node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    directory = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    if directory is None:
        pytest.skip("no /dev/shm")
    stale = directory / f"mailplane-anvil-{node.pid}-deadbeef"
    stale.write_bytes(b"")
    node.kill()
    node.wait()
    fresh = create_counts_file(rows=2)
    try:
        assert not stale.exists()
    finally:
        fresh.unlink()
        stale.unlink(missing_ok=True)


# --- a node with two MX processes --------------------------------------------------------


def _listeners_of(port: int) -> set[int]:
    """Socket inodes listening on ``port`` (IPv4, loopback or any address)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inodes.add(int(fields[9]))
    return inodes


def _pids_holding(inodes: set[int], candidates: list[int]) -> list[int]:
    found = []
    for pid in candidates:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link == f"socket:[{inode}]" for inode in inodes for link in links):
            found.append(pid)
    return found


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(
                int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _greeting(sock: socket.socket) -> bytes:
    return sock.recv(512)[:9]


@pytest.fixture
def two_mx_node(node_factory: NodeFactory) -> Node:
    node = node_factory(MAILPLANE_MX__WORKERS="2",
                        MAILPLANE_MX__MAX_CONNECTIONS_PER_IP=str(PER_IP))
    node.start()
    return node


def test_the_per_ip_limit_holds_for_the_node_across_both_mx_processes(
    two_mx_node: Node,
) -> None:
    node = two_mx_node
    assert node.process is not None
    mx_pids = _pids_holding(_listeners_of(node.ports["mx"]), _descendants(node.process.pid))
    assert len(mx_pids) == 2  # the node's own process and the extra MX process
    port = node.ports["mx"]
    flood = [socket.create_connection(("127.0.0.1", port), timeout=20,
                                      source_address=("127.0.0.42", 0)) for _ in range(16)]
    try:
        greetings = [_greeting(sock) for sock in flood]
        assert greetings.count(b"220 mx.ma") == PER_IP
        assert greetings.count(b"421 4.7.0") == 16 - PER_IP
        other = socket.create_connection(("127.0.0.1", port), timeout=20,
                                         source_address=("127.0.0.43", 0))
        assert _greeting(other) == b"220 mx.ma"
        other.close()
        # kill -9 the extra MX process: its sessions die, and their places come back.
        extra = [pid for pid in mx_pids if pid != node.process.pid]
        assert len(extra) == 1
        os.kill(extra[0], signal.SIGKILL)
        held = [sock for sock, greeting in zip(flood, greetings, strict=True)
                if greeting.startswith(b"220")]
        alive = []
        for sock in held:
            sock.sendall(b"NOOP\r\n")
            try:
                if sock.recv(512).startswith(b"250"):
                    alive.append(sock)
            except OSError:
                pass
        time.sleep(2.5)  # past the once-a-second liveness check
        more = [socket.create_connection(("127.0.0.1", port), timeout=20,
                                         source_address=("127.0.0.42", 0))
                for _ in range(PER_IP + 2)]
        flood += more
        greetings = [_greeting(sock) for sock in more]
        assert greetings.count(b"220 mx.ma") == PER_IP - len(alive)
    finally:
        for sock in flood:
            sock.close()
    log = node.log_text()
    assert "counted for the node" in log and "Traceback" not in log
