"""Everything a node sends out verifies (SPEC §8b, non-negotiable 8): a whole ``mailplane
serve`` process, its keys made and published with the operator's commands, sends a
submission, a forward, an auto-reply, a notice and a DSN to a capture MX found through a
loopback DNS stub; each captured message is checked by two independent verifiers resolving
through loopback DNS — dkimpy's ``dkimverify`` (a separate process) and a real rspamd,
which must report ``R_DKIM_ALLOW`` for the RSA and the Ed25519 selector alike.

The stub serves exactly what ``mailplane dkim publish`` and ``mailplane dns-records``
printed, read back with dnspython's zone parser: the records an operator would publish.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailplane.signing.keys import public_key_of, txt_value
from tests.conftest import free_port
from tests.factories.daemons import RspamdDaemon
from tests.factories.dkimpy_cli import dkimverify
from tests.factories.dns import DnsStub
from tests.factories.flow import LOOPBACK_SPF
from tests.factories.node import Node, build_node, close_node
from tests.factories.signing import publish, txt_records

CAPTURE_HOST = "127.0.0.2"
REMOTE_DOMAINS = ("dest.test", "sender.test", "contact.test")
#: The capture MX refuses this recipient: a forward to it bounces (a DSN goes out).
REFUSED = "nobody@dest.test"
PASSWORD_FIELD = "initial_password"


@dataclass
class Capture:
    """The remote MX of every remote domain: records what it accepts."""

    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTP, session: SmtpSession, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.lower() == REFUSED:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        data = envelope.original_content or b""
        assert isinstance(data, bytes)
        with self.lock:
            self.received.append(((envelope.mail_from or "").strip("<>"),
                                  list(envelope.rcpt_tos), data))
        return "250 2.0.0 queued"

    def wait_for(self, recipient: str, predicate: Callable[[bytes], bool] = lambda _: True,
                 seconds: float = 60.0) -> tuple[str, bytes]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                for mail_from, rcpts, data in self.received:
                    if recipient in rcpts and predicate(data):
                        return mail_from, data
            time.sleep(0.1)
        raise AssertionError(f"nothing reached {recipient} within {seconds} s")


@dataclass
class World:
    node: Node
    dns: DnsStub
    capture: Capture
    selectors: dict[str, str]  # algorithm -> selector
    contract: str
    addresses: dict[str, dict[str, Any]]

    def address(self, name: str) -> str:
        return str(self.addresses[name]["address"]["address"])


def _cli(node: Node, *args: str) -> str:
    done = node.cli(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("signing-node")
    zone: dict[str, dict[str, list[Any]]] = {"mx.capture.test": {"A": [CAPTURE_HOST]}}
    for domain in REMOTE_DOMAINS:
        zone[domain] = {"MX": [(10, "mx.capture.test")]}
    # The Internet senders of these tests pass SPF, so a failed forward draws a DSN
    # (SPEC §5: none to a sender that did not authenticate).
    zone["sender.test"]["TXT"] = [LOOPBACK_SPF]
    dns = DnsStub(zone).start()
    capture = Capture()
    port = free_port()
    controller = Controller(capture, hostname=CAPTURE_HOST, port=port, ready_timeout=10)
    controller.start()
    node = build_node(
        base, name="signer",
        MAILPLANE_MX__HOSTNAME="mx.example.net",
        MAILPLANE_SRS__SECRET="signing-test-srs", MAILPLANE_SRS__DOMAIN="srs.example.net",
        MAILPLANE_OUTBOUND__DNS_NAMESERVER=f"{dns.host}:{dns.port}",
        MAILPLANE_AUTHENTICATION__NAMESERVER=f"{dns.host}:{dns.port}",
        MAILPLANE_OUTBOUND__MX_PORT=port, MAILPLANE_OUTBOUND__POLL_SECONDS="0.5",
        MAILPLANE_OUTBOUND__CONNECT_TIMEOUT_SECONDS="5",
        MAILPLANE_OUTBOUND__MAX_BACKOFF_SECONDS="1",
    )
    try:
        # The operator's rotation, first round: generate, publish, put the printed
        # records into DNS, activate (which looks them up in that DNS first).
        suffix = uuid.uuid4().hex[:6]
        selectors = {alg: f"{alg}-{suffix}" for alg in ("ed25519", "rsa")}
        for algorithm, name in selectors.items():
            _cli(node, "dkim", "generate", "--algorithm", algorithm, "--selector", name)
        printed = _cli(node, "dkim", "publish", *selectors.values())
        publish(dns, txt_records(printed))
        _cli(node, "dkim", "activate", *selectors.values())
        publish(dns, txt_records(_cli(node, "dns-records")))
        node.start()
        api = node.api()
        contract = f"C{suffix.upper()}"
        created = api.post("/v1/contracts", json={"customer_number": contract,
                                                  "contact_email": "owner@contact.test"})
        assert created.status_code == 201, created.text
        addresses = {}
        for local in ("taro", "fwd", "away", "bouncer"):
            made = api.post(f"/v1/contracts/{contract}/addresses", json={
                "local_part": local, "subdomain": "e06", "accept_terms": True})
            assert made.status_code == 201, made.text
            addresses[local] = made.json()
        world = World(node, dns, capture, selectors, contract, addresses)
        for local, destination in (("fwd", "bob@dest.test"), ("bouncer", REFUSED)):
            saved = api.put(f"/v1/contracts/{contract}/addresses/{world.address(local)}"
                            "/forwarding", json={"destinations": [destination],
                                                 "keep_copy": True})
            assert saved.status_code == 200, saved.text
        saved = api.put(f"/v1/contracts/{contract}/addresses/{world.address('away')}"
                        "/auto-reply", json={"enabled": True,
                                             "default_message": "ただいま不在です。"})
        assert saved.status_code == 200, saved.text
        node.settle()
        yield world
    finally:
        close_node(node)
        controller.stop()
        dns.close()


def _verify_everywhere(world: World, rspamd: RspamdDaemon, data: bytes, *,
                       mail_from: str, others: int = 0) -> dict[str, list[str]]:
    """dkimpy verifies each of our two signatures (and ``others`` below them); rspamd
    accepts both of our selectors.  Returns rspamd's symbols."""
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
                           b"d=example.net;")
    for index in range(2 + others):
        checked = dkimverify(world.dns, data, index)
        assert checked.returncode == 0 and "signature ok" in checked.stdout, (
            index, checked.stdout, checked.stderr)
    rspamd.publish({name: texts for name, texts in txt_records_of(world.dns).items()})
    symbols = rspamd.check(data, mail_from=mail_from)
    allowed = set(symbols.get("R_DKIM_ALLOW", []))
    for selector in world.selectors.values():
        assert f"example.net:s={selector}" in allowed, symbols
    assert not {"R_DKIM_REJECT", "R_DKIM_PERMFAIL", "R_DKIM_TEMPFAIL"} & set(symbols), symbols
    return symbols


def txt_records_of(stub: DnsStub) -> dict[str, list[str]]:
    return {name: list(records["TXT"]) for name, records in stub.zone.items()
            if "TXT" in records}


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _mx_send(world: World, message: EmailMessage | bytes, mail_from: str,
             to: str) -> None:
    raw = message if isinstance(message, bytes) else message.as_bytes()
    with smtplib.SMTP("127.0.0.1", world.node.ports["mx"], timeout=30) as smtp:
        smtp.ehlo("mx.sender.test")
        smtp.sendmail(mail_from, [to], raw)


def _message(sender: str, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Mon, 23 Nov 2026 12:00:00 +0900"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@{sender.rpartition('@')[2]}>"
    message.set_content("明日の会議は10時からです。\n")
    return message


def test_submitted_mail_verifies_with_dkimpy_and_rspamd(world: World,
                                                        rspamd_daemon: RspamdDaemon) -> None:
    sender = world.address("taro")
    password = world.addresses["taro"][PASSWORD_FIELD]["password"]
    with smtplib.SMTP("127.0.0.1", world.node.ports["sub"], timeout=30) as smtp:
        smtp.starttls(context=_tls())
        smtp.login(world.addresses["taro"]["pop_account"], password)
        smtp.send_message(_message(sender, "alice@dest.test", "会議の件"))
    mail_from, data = world.capture.wait_for("alice@dest.test")
    assert mail_from == sender
    symbols = _verify_everywhere(world, rspamd_daemon, data, mail_from=mail_from)
    assert "DMARC_POLICY_ALLOW" in symbols  # e06.example.net aligns with d=example.net


def test_a_forward_verifies_with_the_original_signature_kept(
        world: World, rspamd_daemon: RspamdDaemon) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    world.dns.zone["orig._domainkey.sender.test"] = {"TXT": [txt_value("rsa",
                                                                       public_key_of(key))]}
    original = _message("alice@sender.test", world.address("fwd"), "forward me").as_bytes(
        ).replace(b"\n", b"\r\n")
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    signed = dkim.sign(original, b"orig", b"sender.test", pem,
                       canonicalize=(b"relaxed", b"relaxed")) + original
    _mx_send(world, signed, "alice@sender.test", world.address("fwd"))
    mail_from, data = world.capture.wait_for("bob@dest.test")
    assert mail_from.startswith("SRS0=") and mail_from.endswith("@srs.example.net")
    assert data.endswith(signed)
    symbols = _verify_everywhere(world, rspamd_daemon, data, mail_from=mail_from, others=1)
    assert "sender.test:s=orig" in symbols["R_DKIM_ALLOW"]


def test_an_auto_reply_verifies(world: World, rspamd_daemon: RspamdDaemon) -> None:
    _mx_send(world, _message("carol@sender.test", world.address("away"), "ご相談"),
             "carol@sender.test", world.address("away"))
    mail_from, data = world.capture.wait_for("carol@sender.test")
    assert mail_from == ""  # RFC 3834 §3.3
    assert f"From: {world.address('away')}".encode() in data
    _verify_everywhere(world, rspamd_daemon, data, mail_from=mail_from)


def test_a_notice_verifies(world: World, rspamd_daemon: RspamdDaemon) -> None:
    # Creating the addresses and changing forwarding told the remote contact (SPEC §9).
    mail_from, data = world.capture.wait_for("owner@contact.test")
    assert b"postmaster@mx.example.net" in data
    _verify_everywhere(world, rspamd_daemon, data, mail_from=mail_from)


def test_a_dsn_verifies(world: World, rspamd_daemon: RspamdDaemon) -> None:
    _mx_send(world, _message("dave@sender.test", world.address("bouncer"), "届きますか"),
             "dave@sender.test", world.address("bouncer"))
    mail_from, data = world.capture.wait_for(
        "dave@sender.test", lambda d: b"multipart/report" in d)
    assert mail_from == ""
    assert b"MAILER-DAEMON@mx.example.net" in data
    _verify_everywhere(world, rspamd_daemon, data, mail_from=mail_from)


def test_the_demo_keys_of_seed_demo_sign_offline(tmp_path: Path) -> None:
    node = build_node(tmp_path, name="demo")
    seeded = node.cli("seed-demo")
    assert seeded.returncode == 0, seeded.stderr
    assert "DKIM: signing with ed25519-" in seeded.stdout
    listing = node.cli("dkim", "list").stdout
    assert listing.count(" active ") == 2 and "MISSING" not in listing
    again = node.cli("seed-demo")  # idempotent: no new keys
    assert "DKIM" not in again.stdout
    assert len(list((node.state_dir / "dkim").glob("*.pem"))) == 2
