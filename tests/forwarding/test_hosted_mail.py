"""Issue 14 end to end: a real node (``mailplane serve`` with ``config/mailplane.toml``, the
``make run`` defaults) seeded by ``seed-demo``, on a machine without DNS — the node's
nameserver is a port where nothing answers, so any lookup for a hosted domain would fail
the mail.  Every case on SQLite and PostgreSQL; mailboxes are read over POP3.
"""

from __future__ import annotations

import poplib
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage

import httpx
import pytest
from sqlalchemy import select

from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import OutboundJob
from tests.conftest import free_port
from tests.factories.node import Node, NodeFactory

TARO = "taro@e06.example.net"
HANAKO = "hanako@e06.example.net"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
DEMO = "/v1/contracts/DEMO0001/addresses"


def _wait_for(predicate: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class Demo:
    node: Node
    api: httpx.Client
    passwords: dict[str, str]  # POP account -> password, as seed-demo printed them

    def settle(self) -> None:
        """Wait until the node's SMTP decisions use the latest settings."""
        self.node.settle()

    def jobs(self) -> list[tuple[str, str]]:
        """(kind, status) of every queued job so far."""
        engine = make_engine(self.node.env["MAILPLANE_DATABASE_URL"])
        with make_session_factory(engine)() as session:
            rows = session.execute(select(OutboundJob.kind, OutboundJob.status)).all()
        engine.dispose()
        return [(kind, status) for kind, status in rows]

    def pop3(self, account: str) -> list[EmailMessage]:
        """Every message in the mailbox, read over POP3 (TLS) and left there."""
        pop = poplib.POP3_SSL("127.0.0.1", self.node.ports["pop3tls"], context=_tls(),
                              timeout=10)
        try:
            pop.user(account)
            pop.pass_(self.passwords[account])
            count, _size = pop.stat()
            messages = []
            for number in range(1, count + 1):
                _resp, lines, _octets = pop.retr(number)
                parsed = message_from_bytes(b"\r\n".join(lines), policy=policy.default)
                assert isinstance(parsed, EmailMessage)
                messages.append(parsed)
            return messages
        finally:
            pop.quit()

    def subjects(self, account: str) -> list[str]:
        return [str(m["Subject"]) for m in self.pop3(account)]

    def wait_for_mail(self, account: str, predicate: Callable[[EmailMessage], bool],
                      ) -> EmailMessage:
        found: list[EmailMessage] = []
        assert _wait_for(lambda: bool(found.extend(m for m in self.pop3(account)
                                                   if predicate(m)) or found)), (
            self.subjects(account), self.node.log_text()[-3000:])
        return found[0]

    def submit(self, account: str, message: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", self.node.ports["sub"], timeout=10) as smtp:
            smtp.starttls(context=_tls())
            smtp.login(account, self.passwords[account])
            smtp.send_message(message)

    def receive(self, message: EmailMessage, to: str) -> None:
        with smtplib.SMTP("127.0.0.1", self.node.ports["mx"], timeout=10) as smtp:
            smtp.send_message(message, from_addr="friend@example.org", to_addrs=[to])


@pytest.fixture(params=["sqlite", "postgresql"])
def demo(request: pytest.FixtureRequest, node_factory: NodeFactory) -> Demo:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    # No DNS: a nameserver port where nothing answers.
    node = node_factory(url, MAILPLANE_OUTBOUND__DNS_NAMESERVER=f"127.0.0.1:{free_port()}")
    seeded = node.cli("seed-demo")
    assert seeded.returncode == 0, seeded.stderr
    assert f"contact (notices) {TARO}" in seeded.stdout
    passwords = dict(re.findall(r"POP account (m\d{7}), POP password \(shown once\): (\S+)",
                                seeded.stdout))
    assert sorted(passwords) == ["m0000001", "m0000002"]
    node.start()
    return Demo(node, node.api(), passwords)


def _mail(subject: str, *, sender: str = "friend@example.org", to: str = TARO,
          body: str = "hello\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


def test_forwards_between_hosted_addresses_stay_local_and_a_loop_stops(demo: Demo) -> None:
    api = demo.api
    # A → B with keep-copy OFF; B's own spam judge is on (A's is off).
    assert api.put(f"{DEMO}/{HANAKO}/spam", json={"judge": True, "quarantine": False,
                                                  "notify": False}).status_code == 200
    assert api.put(f"{DEMO}/{TARO}/forwarding",
                   json={"destinations": [HANAKO], "keep_copy": False}).status_code == 200
    demo.settle()
    demo.receive(_mail("cheap watches", body=f"buy now\n{GTUBE}\n"), TARO)
    spam = demo.wait_for_mail("m0000002", lambda m: "cheap watches" in str(m["Subject"]))
    assert str(spam["Subject"]) == "[spam] cheap watches"
    assert spam["Return-Path"] == "<friend@example.org>"  # no SRS on the platform
    assert not any("cheap watches" in s for s in demo.subjects("m0000001"))

    # A → B → A: the copy that comes back to A carries A's Delivered-To and stays there.
    assert api.put(f"{DEMO}/{HANAKO}/forwarding",
                   json={"destinations": [TARO], "keep_copy": False}).status_code == 200
    demo.settle()
    demo.receive(_mail("round trip"), TARO)
    demo.wait_for_mail("m0000001", lambda m: str(m["Subject"]) == "round trip")
    assert demo.subjects("m0000001").count("round trip") == 1
    assert "round trip" not in demo.subjects("m0000002")
    # Nothing failed on the way — the forwarding change notices to the hosted contact
    # (taro) included — and nothing is left waiting.
    assert _wait_for(lambda: {status for _kind, status in demo.jobs()} == {"sent"}), (
        demo.jobs())


def test_auto_reply_and_a_bounce_reach_a_hosted_sender(demo: Demo) -> None:
    api = demo.api
    assert api.put(f"{DEMO}/{HANAKO}/auto-reply", json={
        "enabled": True, "special_senders": [], "special_message": "",
        "default_message": "ただいま不在です。"}).status_code == 200
    demo.settle()
    demo.submit("m0000001", _mail("会議の件", sender=TARO, to=HANAKO))
    reply = demo.wait_for_mail("m0000001", lambda m: str(m["Subject"]) == "Re: 会議の件")
    assert reply["Auto-Submitted"] == "auto-replied" and reply["From"] == HANAKO

    # A forward to a hosted address that no longer exists (saved while it did — a
    # destination that never existed is refused when saved): the DSN reaches the
    # (hosted) original sender.
    assert api.put(f"{DEMO}/{HANAKO}/forwarding", json={
        "destinations": ["ghost@e06.example.net"], "keep_copy": False}).status_code == 422
    made = api.post(DEMO, json={"local_part": "ghost", "subdomain": "e06",
                                "accept_terms": True, "accept_charge": True})
    assert made.status_code == 201, made.text
    assert api.put(f"{DEMO}/{HANAKO}/forwarding", json={
        "destinations": ["ghost@e06.example.net"], "keep_copy": False}).status_code == 200
    assert api.delete(f"{DEMO}/ghost@e06.example.net").status_code == 204
    demo.settle()
    demo.submit("m0000001", _mail("are you there", sender=TARO, to=HANAKO))
    bounce = demo.wait_for_mail(
        "m0000001", lambda m: m.get_content_type() == "multipart/report")
    assert str(bounce["To"]) == TARO
    report = bounce.as_bytes()
    assert b"Final-Recipient: rfc822; ghost@e06.example.net" in report
    assert b"Status: 5.1.1" in report
    assert demo.subjects("m0000001").count("Re: 会議の件") == 1  # still one reply in 24 h


def test_notices_are_readable_over_pop3_and_a_suspended_address_cannot_log_in(
    demo: Demo,
) -> None:
    # A change notice goes to the demo's hosted contact address.
    reissued = demo.api.post(f"{DEMO}/{HANAKO}/password/reissue")
    assert reissued.status_code == 200
    demo.passwords["m0000002"] = reissued.json()["password"]
    notice = demo.wait_for_mail("m0000001", lambda m: HANAKO in m.get_body(
        preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
    assert notice["To"] == TARO

    suspended = demo.node.cli("suspend-address", HANAKO)
    assert suspended.returncode == 0 and f"{HANAKO}: suspended" in suspended.stdout
    with pytest.raises(poplib.error_proto, match="suspended"):
        demo.pop3("m0000002")
    with smtplib.SMTP("127.0.0.1", demo.node.ports["sub"], timeout=10) as smtp:
        smtp.starttls(context=_tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login("m0000002", demo.passwords["m0000002"])
        assert refused.value.smtp_code == 535
    demo.settle()
    demo.receive(_mail("kept while suspended", to=HANAKO), HANAKO)  # the MX still accepts

    resumed = demo.node.cli("resume-address", HANAKO)
    assert resumed.returncode == 0, resumed.stderr
    demo.wait_for_mail("m0000002", lambda m: str(m["Subject"]) == "kept while suspended")
