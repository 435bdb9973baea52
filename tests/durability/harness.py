"""Crash harness: a real node (``mailplane serve`` subprocess), a capture MX standing in for
the Internet (the node's smarthost), SMTP clients that retry like an MTA, ``kill -9`` at
random moments, and an audit that counts every message by Message-ID afterwards.

Used by the short crash tests (``tests/durability/test_crash.py``) and the long run
(``python -m tests.durability.soak``).  Loopback only; bounded in count and time.

What is counted: one *transaction* is one MX acceptance, identified by the queue id the MX
writes into its ``Received`` header (``… id <hex16>``).  Every copy of a message — inbox
file (``new/``/``cur/``), quarantine index row, outbound job still queued, or envelope at
the capture MX — carries that id, so

* a 250'd Message-ID with no transaction is **lost**;
* a Message-ID with two transactions is a **duplicate** — acceptable only when the client
  never saw a 250 for some attempt (it retried, as RFC 5321 §4.5.4.1 asks);
* the same transaction reaching the capture MX twice is a **redelivery**: the worker was
  killed after the remote 250 and before recording it.  SMTP cannot prevent that
  (RFC 5321 §6.1 "at least once"), so it is reported, not failed.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import smtplib
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from tests.conftest import free_port
from tests.factories.messages import GTUBE as GTUBE_BYTES
from tests.factories.node import Node, build_node

GTUBE = GTUBE_BYTES.decode("ascii")
REMOTE = "dest@remote.example"
CONTRACT = "C1"
#: kind -> local part of the hosted address receiving that kind of message
ADDRESSES = {"inbox": "ibx", "quarantine": "qtn", "forward": "fwd"}
SUBDOMAIN = "r01"

_MID = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.IGNORECASE | re.MULTILINE)
_QUEUE_ID = re.compile(rb"by [^\s]+ \(mailplane\) with E?SMTP id ([0-9a-f]{16})")
_DELIVERED_TO = re.compile(rb"^Delivered-To:\s*<?([^>\r\n]+)", re.IGNORECASE | re.MULTILINE)


def hosted(kind: str) -> str:
    return f"{ADDRESSES[kind]}@{SUBDOMAIN}.example.net"


# --- capture MX (the Internet) -----------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One DATA the remote side answered 250, by destination: who it went to and which
    hosted address forwarded it (its top ``Delivered-To``, "" if none)."""

    message_id: str
    recipients: tuple[str, ...]
    delivered_to: str


@dataclass
class CaptureLog:
    """What the remote side acknowledged: (message-id, queue id) per DATA it answered 250,
    and the same DATA by envelope (:class:`Captured`)."""

    delivered: list[tuple[str, str]] = field(default_factory=list)
    envelopes: list[Captured] = field(default_factory=list)
    delay_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)  # a slow remote: kills land mid-delivery
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        mid, queue_id = identify(content)
        forwarder = _DELIVERED_TO.search(content.split(b"\r\n\r\n", 1)[0])
        captured = Captured(mid, tuple(r.lower() for r in envelope.rcpt_tos),
                            forwarder.group(1).decode().strip().lower() if forwarder else "")
        with self.lock:
            self.delivered.append((mid, queue_id))
            self.envelopes.append(captured)
        return "250 2.0.0 queued"


def start_capture(delay_seconds: float = 0.0) -> tuple[Controller, CaptureLog]:
    capture = CaptureLog(delay_seconds=delay_seconds)
    controller = Controller(capture, hostname="127.0.0.1", port=free_port(), ready_timeout=10)
    controller.start()
    return controller, capture


def identify(content: bytes) -> tuple[str, str]:
    head = content.split(b"\r\n\r\n", 1)[0]
    mid = _MID.search(head)
    queue_id = _QUEUE_ID.search(head.replace(b"\r\n\t", b" "))
    return (mid.group(1).decode() if mid else "", queue_id.group(1).decode() if queue_id else "")


# --- the node --------------------------------------------------------------------------


def crash_node(base: Path, capture_port: int, name: str = "node", **env: Any) -> Node:
    """A started node whose outbound mail goes to the capture MX (see :func:`crash_node_on`);
    ``env`` overrides, e.g. ``MAILPLANE_OUTBOUND__SMARTHOST=""`` to route by MX lookup."""
    settings: dict[str, Any] = {
        "MAILPLANE_OUTBOUND__SMARTHOST": "127.0.0.1",
        "MAILPLANE_OUTBOUND__SMARTHOST_PORT": str(capture_port),
        "MAILPLANE_OUTBOUND__CONNECT_TIMEOUT_SECONDS": "5",
        "MAILPLANE_SRS__SECRET": "soak-srs-secret",
        "MAILPLANE_SRS__DOMAIN": "srs.mailplane.test",
        # Durability, not limits: every forward of a long soak must reach the capture MX
        # (the hourly remote-forward limit has tests of its own).
        "MAILPLANE_FORWARDING__REMOTE_MESSAGES_PER_HOUR": "0",
        "MAILPLANE_FORWARDING__REMOTE_RECIPIENTS_PER_HOUR": "0",
    }
    settings.update(env)
    return crash_node_on(build_node(base, name=name, **settings))


def crash_node_on(node: Node) -> Node:
    """Start ``node`` and create three hosted addresses: ``ibx`` (plain inbox), ``qtn``
    (spam judge + quarantine ON: GTUBE mail is quarantined), ``fwd`` (forwards to
    ``REMOTE``, keeps no copy); return once the MX accepts all three."""
    node.start()
    api = node.api()
    created = api.post("/v1/contracts", json={"customer_number": CONTRACT,
                                               "contact_email": "c1@contact.example.jp"})
    assert created.status_code == 201, created.text
    for local in ADDRESSES.values():
        made = api.post(f"/v1/contracts/{CONTRACT}/addresses",
                        json={"local_part": local, "subdomain": SUBDOMAIN, "accept_terms": True})
        assert made.status_code == 201, made.text
    base_url = f"/v1/contracts/{CONTRACT}/addresses"
    assert api.put(f"{base_url}/{hosted('quarantine')}/spam",
                   json={"judge": True, "quarantine": True, "notify": False}).status_code == 200
    forwarding = api.put(f"{base_url}/{hosted('forward')}/forwarding",
                         json={"destinations": [REMOTE], "keep_copy": False})
    assert forwarding.status_code == 200, forwarding.text
    wait_until_accepting(node, [hosted(kind) for kind in ADDRESSES])
    node.settle()  # the forwarding and spam settings too, not only the addresses
    return node


def wait_until_accepting(node: Node, recipients: list[str], seconds: float = 20.0) -> None:
    """The policy cache polls the revision: wait until RCPT accepts every recipient (no
    message is sent: MAIL/RCPT then RSET)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10) as smtp:
                smtp.ehlo("probe.example")
                smtp.mail("probe@example.org")
                if all(smtp.rcpt(r)[0] == 250 for r in recipients):
                    smtp.rset()
                    return
        except (OSError, smtplib.SMTPException):
            pass
        time.sleep(0.2)
    raise AssertionError("the node never accepted the test recipients")


def restart(node: Node) -> None:
    node.stop(signal.SIGKILL)
    node.start()


# --- clients ---------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients saw, per Message-ID."""

    kinds: dict[str, str] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    #: attempts that ended without a reply to the final dot (the client cannot know)
    unacknowledged: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def message(mid: str, kind: str, run: str) -> tuple[EmailMessage, str]:
    msg = EmailMessage()
    msg["From"] = "sender@client.example"
    recipient = hosted(kind)
    msg["To"] = recipient
    msg["Subject"] = f"soak {mid}"
    msg["Message-ID"] = f"<{mid}>"
    body = f"run {run} message {mid}\n"
    if kind == "quarantine":
        body += GTUBE + "\n"
    msg.set_content(body + "filler line\n" * random.randint(0, 50))
    return msg, recipient


def send_until_accepted(node: Node, ledger: Ledger, mid: str, kind: str, run: str,
                        deadline: float) -> None:
    """Send one message like an MTA: retry after any failure or a 4xx until 250 or the
    deadline.  Records whether an attempt ended without the final reply."""
    msg, recipient = message(mid, kind, run)
    with ledger.lock:
        ledger.kinds[mid] = kind
    while time.monotonic() < deadline:
        with ledger.lock:
            ledger.attempts += 1
        data_sent = False
        try:
            with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=20) as smtp:
                smtp.ehlo("client.example")
                code, _ = smtp.mail("sender@client.example")
                if code != 250:
                    raise smtplib.SMTPResponseException(code, b"MAIL")
                code, _ = smtp.rcpt(recipient)
                if code != 250:
                    raise smtplib.SMTPResponseException(code, b"RCPT")
                code, _ = smtp.docmd("DATA")
                if code != 354:
                    raise smtplib.SMTPResponseException(code, b"DATA")
                data_sent = True
                payload = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                code, _ = _finish_data(smtp, payload)
                data_sent = False  # a reply arrived: the client knows the outcome
                if code == 250:
                    with ledger.lock:
                        ledger.acknowledged.add(mid)
                    return
        except (OSError, smtplib.SMTPException):
            if data_sent:
                with ledger.lock:
                    ledger.unacknowledged[mid] += 1
        time.sleep(random.uniform(0.05, 0.3))


def _finish_data(smtp: smtplib.SMTP, payload: bytes) -> tuple[int, bytes]:
    """The body and final dot after our own DATA command (smtplib.data() would send DATA
    again).  A failure after this point leaves the client not knowing the outcome."""
    stuffed = re.sub(rb"(?m)^\.", b"..", payload)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    smtp.send(stuffed + b".\r\n")
    return smtp.getreply()


# --- the audit -------------------------------------------------------------------------


@dataclass
class Audit:
    #: Message-ID -> {queue id: places}
    copies: dict[str, dict[str, list[str]]]
    redeliveries: int
    pending_jobs: int


def audit(node: Node, capture: CaptureLog) -> Audit:
    copies: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _inbox_files(node.state_dir / "mail"):
        mid, qid = identify(path.read_bytes())
        copies[mid][qid].append("inbox")
    db = sqlite3.connect(node.env["MAILPLANE_DATABASE_URL"].removeprefix("sqlite:///"))
    try:
        for (path,) in db.execute("SELECT path FROM quarantine_items"):
            mid, qid = identify(Path(path).read_bytes())
            copies[mid][qid].append("quarantine")
        pending = db.execute("SELECT spool_path, message FROM outbound_jobs"
                             " WHERE status = 'queued'").fetchall()
        for path, inline in pending:
            mid, qid = identify(inline if inline is not None else Path(path).read_bytes())
            copies[mid][qid].append("queued")
    finally:
        db.close()
    redeliveries = 0
    with capture.lock:
        delivered = Counter(capture.delivered)
    for (mid, qid), count in delivered.items():
        copies[mid][qid].append("captured")
        redeliveries += count - 1
    return Audit({k: dict(v) for k, v in copies.items()}, redeliveries, len(pending))


def _inbox_files(root: Path) -> Iterator[Path]:
    for sub in ("new", "cur"):
        yield from (p for p in root.glob(f"*/*/{sub}/*") if p.is_file())


def wait_for_queue_drain(node: Node, seconds: float = 60.0, *,
                         except_recipients_like: str = "") -> int:
    """Wait until the node's worker sent every queued job; return how many are left.
    ``except_recipients_like``: a LIKE pattern of jobs not waited for (mail for hostile
    destinations, which stays queued by design)."""
    db_path = node.env["MAILPLANE_DATABASE_URL"].removeprefix("sqlite:///")
    deadline = time.monotonic() + seconds
    left = -1
    query = "SELECT count(*) FROM outbound_jobs WHERE status = 'queued'"
    if except_recipients_like:
        query += " AND recipients NOT LIKE ?"
    params = (except_recipients_like,) if except_recipients_like else ()
    while time.monotonic() < deadline:
        db = sqlite3.connect(db_path)
        try:
            left = db.execute(query, params).fetchone()[0]
        finally:
            db.close()
        if left == 0:
            return 0
        time.sleep(0.3)
    return left


@dataclass
class Report:
    sent: int
    acknowledged: int
    stored: int
    duplicates: int
    unexplained_duplicates: list[str]
    lost: list[str]
    misplaced: list[str]
    crashes: int
    redeliveries: int
    attempts: int

    def table(self) -> str:
        rows = [
            ("messages sent", self.sent),
            ("client attempts", self.attempts),
            ("250s received", self.acknowledged),
            ("stored", self.stored),
            ("duplicates (client never saw 250)", self.duplicates),
            ("duplicates unexplained", len(self.unexplained_duplicates)),
            ("lost", len(self.lost)),
            ("in the wrong place", len(self.misplaced)),
            ("redelivered to remote (at-least-once)", self.redeliveries),
            ("crashes injected (kill -9)", self.crashes),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value:>8}" for name, value in rows)


_EXPECTED_PLACE = {"inbox": {"inbox"}, "quarantine": {"quarantine"},
                   "forward": {"queued", "captured"}}


def reconcile(ledger: Ledger, result: Audit, crashes: int) -> Report:
    lost = sorted(mid for mid in ledger.acknowledged if not result.copies.get(mid))
    stored = sum(1 for mid in ledger.kinds if result.copies.get(mid))
    duplicates = 0
    unexplained: list[str] = []
    misplaced: list[str] = []
    for mid, kind in ledger.kinds.items():
        transactions = result.copies.get(mid, {})
        extra = max(0, len(transactions) - 1)
        duplicates += extra
        if extra and not ledger.unacknowledged[mid]:
            unexplained.append(mid)
        for qid, places in transactions.items():
            # One transaction, one place (captured may repeat: that is a redelivery).
            if not qid or not set(places) <= _EXPECTED_PLACE[kind] or \
                    (places.count("queued") + places.count("inbox")
                     + places.count("quarantine")) > 1 or \
                    ("queued" in places and "captured" in places):
                misplaced.append(f"{mid} {qid} {places}")
    return Report(
        sent=len(ledger.kinds), acknowledged=len(ledger.acknowledged), stored=stored,
        duplicates=duplicates, unexplained_duplicates=unexplained, lost=lost,
        misplaced=misplaced, crashes=crashes, redeliveries=result.redeliveries,
        attempts=ledger.attempts,
    )


# --- one run ---------------------------------------------------------------------------


def run_mx_crash(base: Path, *, messages: int, clients: int, crashes: int,
                 seconds: float, seed: int | None = None) -> Report:
    """Clients send ``messages`` (mixed kinds) while the node is killed ``crashes`` times
    at random moments and restarted; then the queue drains and everything is counted."""
    rng = random.Random(seed)
    controller, capture = start_capture()
    node = crash_node(base, controller.port)
    try:
        ledger = Ledger()
        run = f"{rng.randrange(1 << 30):x}"
        kinds = list(ADDRESSES)
        work = [(f"soak-{run}-{i}@client.example", kinds[i % len(kinds)])
                for i in range(messages)]
        deadline = time.monotonic() + seconds
        queue_lock = threading.Lock()

        def client() -> None:
            while True:
                with queue_lock:
                    if not work:
                        return
                    mid, kind = work.pop(0)
                send_until_accepted(node, ledger, mid, kind, run, deadline)
                time.sleep(rng.uniform(0.0, 0.06))  # a steady stream, not one burst

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for thread in threads:
            thread.start()
        injected = 0
        while injected < crashes and any(t.is_alive() for t in threads):
            time.sleep(rng.uniform(0.2, 1.0))
            restart(node)
            injected += 1
        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic()))
        left = wait_for_queue_drain(node)
        assert left == 0, f"{left} outbound job(s) still queued after the run"
        return reconcile(ledger, audit(node, capture), injected)
    finally:
        for client_ in node.clients:
            client_.close()
        node.stop(signal.SIGKILL)
        controller.stop()


def run_worker_crash(base: Path, *, messages: int, crashes: int,
                     seed: int | None = None) -> Report:
    """Queue ``messages`` forwards (all 250'd), then kill the node while its worker is
    delivering to a slow remote, ``crashes`` times; every job must still be delivered."""
    rng = random.Random(seed)
    controller, capture = start_capture(delay_seconds=0.4)
    node = crash_node(base, controller.port)
    try:
        ledger = Ledger()
        run = f"{rng.randrange(1 << 30):x}"
        deadline = time.monotonic() + 60
        for i in range(messages):
            send_until_accepted(node, ledger, f"wk-{run}-{i}@client.example", "forward", run,
                                deadline)
        injected = 0
        for _ in range(crashes):
            time.sleep(rng.uniform(0.2, 0.9))  # lands while a DATA is being answered
            restart(node)
            injected += 1
        left = wait_for_queue_drain(node, seconds=messages * 1.0 + 30)
        assert left == 0, f"{left} outbound job(s) still queued after the run"
        return reconcile(ledger, audit(node, capture), injected)
    finally:
        for client_ in node.clients:
            client_.close()
        node.stop(signal.SIGKILL)
        controller.stop()
