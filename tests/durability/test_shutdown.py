"""Graceful shutdown (issue 7): SIGTERM stops accepting, lets the transaction in DATA
finish with its 250, tells idle sessions 421, and the node exits 0 with the mail stored."""

from __future__ import annotations

import signal
import smtplib
import socket
import time

from tests.durability.harness import crash_node_on, hosted, start_capture
from tests.factories.node import NodeFactory


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


def test_sigterm_finishes_the_message_in_data_and_says_421_to_idle_sessions(
    node_factory: NodeFactory,
) -> None:
    controller, _capture = start_capture()
    try:
        node = crash_node_on(node_factory(**_smarthost(controller.port)))
        idle = smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10)
        idle.ehlo("idle.example")
        busy = smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=30)
        busy.ehlo("busy.example")
        assert busy.mail("sender@client.example")[0] == 250
        assert busy.rcpt(hosted("inbox"))[0] == 250
        assert busy.docmd("DATA")[0] == 354
        busy.send(b"Message-ID: <in-flight@client.example>\r\nSubject: mid-DATA\r\n\r\nfirst\r\n")
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while not _refuses(node.ports["mx"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _refuses(node.ports["mx"]), "the MX still accepts connections after SIGTERM"
        code, _text = idle.getreply()
        assert code == 421
        busy.send(b"second line after SIGTERM\r\n.\r\n")
        code, text = busy.getreply()
        assert code == 250, text
        assert node.process.wait(timeout=40) == 0
        inbox = list((node.state_dir / "mail").glob("*/*/new/*"))
        assert len(inbox) == 1
        assert b"second line after SIGTERM" in inbox[0].read_bytes()
    finally:
        controller.stop()


def _smarthost(port: int) -> dict[str, str]:
    return {"MAILPLANE_OUTBOUND__SMARTHOST": "127.0.0.1",
            "MAILPLANE_OUTBOUND__SMARTHOST_PORT": str(port),
            "MAILPLANE_SRS__SECRET": "test-srs", "MAILPLANE_SRS__DOMAIN": "srs.mailplane.test"}
