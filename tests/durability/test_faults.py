"""Fault injection (issue 7): a full disk, a database outage and a DNS timeout each give
a temporary answer, lose nothing, and heal without an operator."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mailplane.clock import as_utc
from tests.durability.harness import GTUBE, crash_node_on, hosted
from tests.factories.node import Node, NodeFactory
from tests.factories.outbound import OutboundEnv
from tests.factories.queue import job, stage


def _send(node: Node, recipient: str, mid: str, body: str) -> tuple[int, bytes]:
    message = (f"From: s@client.example\r\nTo: {recipient}\r\nMessage-ID: <{mid}>\r\n"
               f"Subject: fault\r\n\r\n{body}\r\n").encode()
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=60) as smtp:
        smtp.ehlo("client.example")
        assert smtp.mail("s@client.example")[0] == 250
        code, text_ = smtp.rcpt(recipient)
        if code != 250:
            return code, text_
        return smtp.data(message)


def _stored(node: Node) -> list[bytes]:
    return [p.read_bytes() for p in (node.state_dir / "mail").glob("*/*/new/*")]


# --- disk full -------------------------------------------------------------------------


@pytest.fixture
def small_mail_volume(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs where the node keeps its Maildirs (root only)."""
    mount_point = tmp_path / "node" / "mail"
    mount_point.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_answers_452_4_3_1_keeps_every_accepted_message_and_heals(
    node_factory: NodeFactory, small_mail_volume: Path,
) -> None:
    node = crash_node_on(node_factory(state_dir=small_mail_volume.parent))
    filler = small_mail_volume / "filler"
    filler.write_bytes(b"x" * (1536 * 1024))  # leave ~0.5 MB
    body = ("y" * 76 + "\r\n") * 1300  # ~100 KB per message
    accepted: list[str] = []
    last = (0, b"")
    for i in range(12):
        last = _send(node, hosted("inbox"), f"full-{i}@client.example", body)
        if last[0] != 250:
            break
        accepted.append(f"full-{i}@client.example")
    assert last[0] == 452 and last[1].startswith(b"4.3.1"), last
    assert accepted, "the disk filled before any message was accepted"
    stored = _stored(node)
    assert sorted(m for m in accepted if any(m.encode() in s for s in stored)) == sorted(accepted)
    assert len(stored) == len(accepted)
    assert list(small_mail_volume.glob("*/*/tmp/*")) == []  # no half-written files left

    filler.unlink()
    assert _send(node, hosted("inbox"), "after@client.example", "space again")[0] == 250
    assert b"Traceback" not in node.log_text().encode()


# --- database outage -------------------------------------------------------------------


def test_database_outage_answers_451_for_mail_needing_it_and_recovers_by_itself(
    node_factory: NodeFactory, pg_url: str,
) -> None:
    node = crash_node_on(node_factory(database_url=pg_url))
    name = pg_url.rsplit("/", 1)[1]
    admin = create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :name AND pid <> pg_backend_pid()"),
                         {"name": name})
        # Quarantine needs its index row: the database is required, so 451.
        code, reply = _send(node, hosted("quarantine"), "db-1@client.example", GTUBE)
        assert code == 451 and reply.startswith(b"4.3.0"), reply
        # Nothing half-stored: no quarantined copy in the 迷惑メール folder, even in tmp/.
        assert not [path for path in (node.state_dir / "mail").rglob(".*/*/*")
                    if path.is_file()]
        # Inbox mail needs only the Maildir and the cached policy: still accepted.
        assert _send(node, hosted("inbox"), "db-2@client.example", "no db needed")[0] == 250
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    code, reply = _send(node, hosted("quarantine"), "db-1@client.example", GTUBE)
    assert code == 250, reply
    assert b"Traceback" not in b"".join(_stored(node))


# --- DNS timeout -----------------------------------------------------------------------


@pytest.fixture
def silent_dns() -> Iterator[tuple[str, int]]:
    """A UDP port that swallows every query: the resolver times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()
    sock.close()


async def test_dns_timeout_keeps_the_job_queued_for_a_later_retry(
    make_outbound_env: Callable[..., OutboundEnv], silent_dns: tuple[str, int],
) -> None:
    from mailplane.outbound.worker import OutboundWorker

    env = make_outbound_env(outbound={"dns_timeout_seconds": 1.0})
    job_id = stage(env, recipients=["bob@slow-dns.test"])
    worker = OutboundWorker(env.settings, env.session_factory, env.clock, worker_id="w1",
                            dns_nameserver=silent_dns)

    assert await worker.run_once() == 1

    row = job(env, job_id)
    assert row.status == "queued" and row.attempts == 1
    assert as_utc(row.next_attempt_at) > env.clock.now()
    assert row.claimed_by is None
    assert list(row.recipients) == ["bob@slow-dns.test"]
    assert await asyncio.to_thread(Path(row.spool_path).exists)  # kept for the retry
