"""Mail loops and auto-reply storms between two hosted addresses stop by themselves
(issue 7; SPEC §5, §6; RFC 3834 §2 Auto-Submitted, RFC 5321 §6.3 loop detection).  The
node's outbound worker uses the node's own MX as its smarthost, so forwards and replies
between hosted addresses really travel round."""

from __future__ import annotations

import signal
import smtplib
import sqlite3
import time
from collections.abc import Iterator

import pytest

from tests.durability.harness import wait_for_queue_drain, wait_until_accepting
from tests.factories.node import Node, build_node


@pytest.fixture
def looped_node(tmp_path: object) -> Iterator[Node]:
    import tests.conftest

    mx_port = tests.conftest.free_port()
    node = build_node(tmp_path,  # type: ignore[arg-type]
                      MAILPLANE_MX__PORT=str(mx_port),
                      MAILPLANE_OUTBOUND__SMARTHOST="127.0.0.1",
                      MAILPLANE_OUTBOUND__SMARTHOST_PORT=str(mx_port),
                      MAILPLANE_OUTBOUND__MAX_HOPS="8",
                      MAILPLANE_SRS__SECRET="loop-srs", MAILPLANE_SRS__DOMAIN="srs.example.net")
    node.ports["mx"] = mx_port
    node.start()
    api = node.api()
    api.post("/v1/contracts", json={"customer_number": "C1", "contact_email": "c@x.example.jp"})
    for local in ("alice", "bob"):
        made = api.post("/v1/contracts/C1/addresses",
                        json={"local_part": local, "subdomain": "l01", "accept_terms": True})
        assert made.status_code == 201, made.text
    yield node
    for client in node.clients:
        client.close()
    node.stop(signal.SIGKILL)


A, B = "alice@l01.example.net", "bob@l01.example.net"


def _jobs(node: Node) -> int:
    """Auto-replies and forwards (not the contact notices of address creation)."""
    db = sqlite3.connect(node.env["MAILPLANE_DATABASE_URL"].removeprefix("sqlite:///"))
    try:
        return int(db.execute("SELECT count(*) FROM outbound_jobs WHERE kind IN "
                              "('auto_reply', 'forward')").fetchone()[0])
    finally:
        db.close()


def _inbox(node: Node, local: str) -> list[bytes]:
    return [p.read_bytes() for p in (node.state_dir / "mail" / "l01.example.net" / local)
            .glob("new/*")]


def _send(node: Node, sender: str, recipient: str, subject: str) -> None:
    message = (f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
               f"Message-ID: <{subject}@l01.example.net>\r\n\r\nhello\r\n")
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=20) as smtp:
        smtp.sendmail(sender, [recipient], message)


def _settle(node: Node) -> None:
    """Until the queue is empty and stays empty (a loop would keep adding jobs)."""
    for _ in range(3):
        assert wait_for_queue_drain(node, seconds=60) == 0
        time.sleep(1.0)


def test_auto_replies_between_two_hosted_addresses_stop_after_one_reply(
    looped_node: Node,
) -> None:
    api = looped_node.api()
    for address in (A, B):
        put = api.put(f"/v1/contracts/C1/addresses/{address}/auto-reply",
                      json={"enabled": True, "default_message": f"{address} is away"})
        assert put.status_code == 200, put.text
    wait_until_accepting(looped_node, [A, B])
    time.sleep(1.0)  # the auto-reply settings reach the policy snapshot
    _send(looped_node, B, A, "storm")
    _settle(looped_node)
    # A replied once to B; B did not answer the auto-reply (RFC 3834 §2).
    assert _jobs(looped_node) == 1
    assert len(_inbox(looped_node, "alice")) == 1
    replies = _inbox(looped_node, "bob")
    assert len(replies) == 1 and b"Auto-Submitted: auto-replied" in replies[0]


def test_forwarding_loop_between_two_hosted_addresses_ends_and_keeps_the_message(
    looped_node: Node,
) -> None:
    api = looped_node.api()
    for address, other in ((A, B), (B, A)):
        put = api.put(f"/v1/contracts/C1/addresses/{address}/forwarding",
                      json={"destinations": [other], "keep_copy": False})
        assert put.status_code == 200, put.text
    wait_until_accepting(looped_node, [A, B])
    time.sleep(1.0)
    _send(looped_node, "stranger@example.org", A, "loop")
    _settle(looped_node)
    # One expansion per message (issue 20): the circle is found within the delivery,
    # no forward is queued, and the first address of it keeps the one copy (never lost).
    assert _jobs(looped_node) == 0
    assert len(_inbox(looped_node, "alice")) == 1
    assert _inbox(looped_node, "bob") == []
