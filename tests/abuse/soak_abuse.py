"""The mixed-abuse phase of ``make soak`` (issue 15): good clients send, fetch, submit and
manage while abusers flood every listener, guess passwords in parallel, harvest
addresses and send hostile MIME and headers — all at once, against one real node.  A
customer also keeps sending to hostile destinations (issue 20): a domain whose eight MX
hosts accept and never greet, and one whose DNS never answers; the node routes by MX
lookup (a DNS stub on loopback), so the good forwards to ``remote.example`` must still
go out while those attempts hang, and the hostile mail must stay queued, not lost.

It reports, for the good clients, every request and its answer class (no 5xx and no
request left unanswered is the bar), and for the mail they sent, the same audit as the
crash run (0 accepted messages lost).  Abusers speak from their own loopback addresses
(127.0.x.y), good clients from 127.0.0.1, so per-IP limits tell them apart.
"""

from __future__ import annotations

import poplib
import random
import smtplib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.durability.harness import (
    CONTRACT,
    SUBDOMAIN,
    Ledger,
    Report,
    audit,
    crash_node,
    hosted,
    message,
    reconcile,
    start_capture,
    wait_for_queue_drain,
)
from tests.factories.dns import DnsStub
from tests.factories.messages import EICAR
from tests.factories.outbound import Tarpit

_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE


@dataclass
class GoodClients:
    """Every request a good client made, by service and answer class."""

    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, service: str, code: int | str, detail: str = "") -> None:
        text = str(code)
        kind = {"2": "2xx", "3": "2xx", "4": "4xx", "5": "5xx", "+": "2xx"}.get(
            text[:1], "unanswered")
        if text.startswith("-ERR"):
            kind = "4xx" if "[SYS/TEMP]" in text or "[IN-USE]" in text else "5xx"
        with self.lock:
            self.answers[(service, kind)] += 1
            if kind in ("5xx", "unanswered"):
                self.problems.append(f"{service}: {text} {detail}"[:200])

    def count(self, kind: str) -> int:
        return sum(n for (_service, k), n in self.answers.items() if k == kind)


@dataclass
class AbuseReport:
    good: GoodClients
    mail: Report
    abuse: Counter[str]
    submitted_lost: list[str]
    tracebacks: int
    #: Mail to hostile destinations (accepted by submission) that is neither queued nor
    #: delivered: it must be none.
    hostile_lost: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.good.count("5xx") and not self.good.count("unanswered")
                and not self.mail.lost and not self.submitted_lost and not self.tracebacks
                and not self.mail.unexplained_duplicates and not self.mail.misplaced
                and not self.hostile_lost)

    def table(self) -> str:
        rows: list[tuple[str, object]] = [
            ("good requests", sum(self.good.answers.values())),
            ("  answered 2xx/+OK", self.good.count("2xx")),
            ("  answered 4xx (retried)", self.good.count("4xx")),
            ("  answered 5xx", self.good.count("5xx")),
            ("  unanswered", self.good.count("unanswered")),
            ("good messages 250'd (MX)", self.mail.acknowledged),
            ("good messages 250'd (submission)", len(self.good.submitted)),
            ("accepted messages lost",
             len(self.mail.lost) + len(self.submitted_lost) + len(self.hostile_lost)),
            ("tracebacks in the node's log", self.tracebacks),
        ]
        rows += [(f"abuse: {name}", count) for name, count in sorted(self.abuse.items())]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value:>8}" for name, value in rows)


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


# --- abusers ---------------------------------------------------------------------------


def _flood(port: int, sources: list[str], per_source: int, stop: threading.Event,
           stats: Counter[str], name: str) -> None:
    """Hold idle connections open from several hosts; reopen what the server closes."""
    held: list[socket.socket] = []
    while not stop.is_set():
        for source in sources:
            for _ in range(per_source - sum(1 for s in held if s.getsockname()[0] == source)):
                try:
                    held.append(socket.create_connection(("127.0.0.1", port), timeout=5,
                                                         source_address=(source, 0)))
                    stats[f"{name} connections"] += 1
                except OSError:
                    stats[f"{name} connects refused by the kernel"] += 1
        time.sleep(0.5)
        alive = []
        for sock in held:
            received, closed = b"", False
            sock.setblocking(False)
            try:
                while chunk := sock.recv(65536):
                    received += chunk
                closed = True
            except BlockingIOError:
                pass
            except OSError:
                closed = True
            sock.setblocking(True)
            if received.startswith((b"421 4.7.0", b"-ERR [SYS/TEMP] too many",
                                    b"HTTP/1.1 503")):
                stats[f"{name} refused at once"] += 1
            elif closed:
                stats[f"{name} closed by the node"] += 1
            if closed:
                sock.close()
            else:
                alive.append(sock)
        held = alive
    for sock in held:
        sock.close()


def _harvest(port: int, stop: threading.Event, stats: Counter[str]) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30,
                                          source_address=("127.0.6.1", 0)) as sock:
                _line(sock)
                sock.sendall(b"EHLO harvester.example\r\nMAIL FROM:<h@harvest.example>\r\n")
                sock.sendall(b"".join(b"RCPT TO:<guess%d@%s.example.net>\r\n"
                                      % (n, SUBDOMAIN.encode()) for n in range(200)))
                sock.settimeout(1.0)
                while not stop.is_set():
                    try:
                        reply = _line(sock)
                    except TimeoutError:
                        continue  # a tarpitted reply: wait on (or leave if stopping)
                    if not reply:
                        break
                    stats["harvest " + reply[:3].decode("ascii", "replace")] += 1
        except OSError:
            stats["harvest connection errors"] += 1


def _guess(node: Any, account: str, stop: threading.Event, stats: Counter[str]) -> None:
    """Wrong passwords for the good account, in parallel, from several hosts."""
    n = 0
    while not stop.is_set():
        n += 1
        source = f"127.0.7.{n % 8 + 1}"
        try:
            with smtplib.SMTP_SSL("127.0.0.1", node.ports["subtls"], timeout=30,
                                  context=_TLS, source_address=(source, 0)) as smtp:
                smtp.login(account, f"guess-{n}")
        except smtplib.SMTPResponseException as exc:
            stats[f"guess answered {exc.smtp_code}"] += 1
        except (OSError, smtplib.SMTPException):
            stats["guess connection errors"] += 1


def _hostile(node: Any, stop: threading.Event, stats: Counter[str]) -> None:
    """MIME bombs, subjects that break header builders, CR in EHLO."""
    deep = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                    for i in range(3000))
    bomb = (b"From: x@bad.example\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n" + deep
            + b"Content-Type: text/plain\r\n\r\n" + EICAR + b"\r\n")
    subjects = [b"a\x0cb", b"a\x0bb", "a\u2028b".encode(), b"caf\xe9"]
    n = 0
    while not stop.is_set():
        n += 1
        try:
            with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=60,
                              source_address=("127.0.8.1", 0)) as smtp:
                code, _ = smtp.docmd("EHLO", "evil\x0bInjected: 1")
                stats[f"hostile EHLO answered {code}"] += 1
                smtp.ehlo("hostile.example")
                raw = bomb if n % 2 else (
                    b"From: x@bad.example\r\nTo: " + hosted("inbox").encode()
                    + b"\r\nSubject: " + subjects[n % 4] + b"\r\n\r\nhi\r\n")
                try:
                    smtp.sendmail("x@bad.example", [hosted("inbox"), _auto_reply_address()],
                                  raw)
                    stats["hostile message accepted"] += 1
                except smtplib.SMTPResponseException as exc:
                    stats[f"hostile message answered {exc.smtp_code}"] += 1
        except (OSError, smtplib.SMTPException):
            stats["hostile connection errors"] += 1
        time.sleep(0.2)


#: Hosts of the domain whose MX hosts never greet (on the capture MX's port).
TARPITS = [f"127.0.9.{n}" for n in range(1, 9)]
HOSTILE_LIKE = "%.hostile.example%"


def _hostile_dns(capture_host: str) -> DnsStub:
    """Good destinations resolve to the capture MX; ``tarpit.hostile.example`` has eight
    MX hosts that never greet; ``silent.hostile.example``'s DNS never answers."""
    zone: dict[str, dict[str, list[Any]]] = {
        "tarpit.hostile.example": {
            "MX": [(10 * n, f"mx{n}.tarpit.hostile.example") for n in range(1, 9)]},
        **{f"mx{n}.tarpit.hostile.example": {"A": [host]}
           for n, host in enumerate(TARPITS, start=1)},
    }
    for domain in ("remote.example", "client.example", "contact.example.jp",
                   "bad.example"):
        zone[domain] = {"MX": [(10, f"mx.{domain}")]}
        zone[f"mx.{domain}"] = {"A": [capture_host]}
    return DnsStub(zone, silent_names=("silent.hostile.example",)).start()


def _to_hostile(node: Any, address: str, account: str, password: str, stop: threading.Event,
                stats: Counter[str], accepted: list[str]) -> None:
    """A customer writing to a tarpit domain and a silent-DNS domain, again and again."""
    n = 0
    while not stop.is_set() and n < 30:
        n += 1
        mid = f"hostile-{n}-{random.randrange(1 << 30):x}@client.example"
        raw = (f"From: {address}\r\nTo: x{n}@tarpit.hostile.example\r\n"
               f"Subject: to a hostile destination {n}\r\nMessage-ID: <{mid}>\r\n\r\n"
               "hello\r\n").encode()
        try:
            with smtplib.SMTP_SSL("127.0.0.1", node.ports["subtls"], timeout=60,
                                  context=_TLS) as smtp:
                smtp.login(account, password)
                smtp.sendmail(address, [f"x{n}@tarpit.hostile.example",
                                        f"y{n}@silent.hostile.example"], raw)
            stats["hostile-destination mail accepted"] += 1
            accepted.append(mid)
        except smtplib.SMTPResponseException as exc:
            stats[f"hostile-destination mail answered {exc.smtp_code}"] += 1
        except (OSError, smtplib.SMTPException):
            stats["hostile-destination connection errors"] += 1
        stop.wait(0.3)


def _auto_reply_address() -> str:
    return f"away@{SUBDOMAIN}.example.net"


# --- good clients ----------------------------------------------------------------------


def _good_mx(node: Any, ledger: Ledger, good: GoodClients, mid: str, kind: str, run: str,
             deadline: float) -> None:
    """One message sent like an MTA: retried after a 4xx or a dropped connection."""
    msg, recipient = message(mid, kind, run)
    payload = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with ledger.lock:
        ledger.kinds[mid] = kind
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=60) as smtp:
                smtp.ehlo("good.example")
                smtp.sendmail("sender@client.example", [recipient], payload)
            good.record("mx", 250)
            with ledger.lock:
                ledger.acknowledged.add(mid)
            return
        except smtplib.SMTPResponseException as exc:
            good.record("mx", exc.smtp_code, mid)
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0]
            good.record("mx", code, mid)
        except (OSError, smtplib.SMTPException) as exc:
            good.record("mx", "unanswered", f"{mid} {type(exc).__name__}")
        time.sleep(random.uniform(0.2, 1.0))


def _good_pop3(node: Any, account: str, password: str, good: GoodClients) -> None:
    try:
        client = poplib.POP3_SSL("127.0.0.1", node.ports["pop3tls"], context=_TLS, timeout=60)
        try:
            client.user(account)
            good.record("pop3", client.pass_(password).decode("ascii", "replace"))
            client.stat()
        finally:
            client.quit()
    except poplib.error_proto as exc:
        good.record("pop3", str(exc.args[0], "ascii", "replace") if isinstance(
            exc.args[0], bytes) else str(exc.args[0]))
    except OSError as exc:
        good.record("pop3", "unanswered", type(exc).__name__)


def _good_submission(node: Any, address: str, account: str, password: str,
                     good: GoodClients, n: int) -> None:
    mid = f"sub-{n}-{random.randrange(1 << 30):x}@client.example"
    raw = (f"From: {address}\r\nTo: {hosted('inbox')}\r\nSubject: submitted {n}\r\n"
           f"Message-ID: <{mid}>\r\n\r\nhello\r\n").encode()
    try:
        with smtplib.SMTP_SSL("127.0.0.1", node.ports["subtls"], timeout=60,
                              context=_TLS) as smtp:
            smtp.login(account, password)
            smtp.sendmail(address, [hosted("inbox")], raw)
        good.record("submission", 250)
        with good.lock:
            good.submitted.append(mid)
    except smtplib.SMTPResponseException as exc:
        good.record("submission", exc.smtp_code)
    except (OSError, smtplib.SMTPException) as exc:
        good.record("submission", "unanswered", type(exc).__name__)


def _good_api(node: Any, good: GoodClients) -> None:
    try:
        answer = httpx.get(f"{node.api_url}/v1/contracts/{CONTRACT}/addresses", timeout=60,
                           headers={"Authorization": f"Bearer {node.operator_key}"})
        good.record("api", answer.status_code)
    except httpx.HTTPError as exc:
        good.record("api", "unanswered", type(exc).__name__)


# --- the run ---------------------------------------------------------------------------


def run_mixed_abuse(base: Path, *, seconds: float, messages: int, clients: int,
                    seed: int | None = None) -> AbuseReport:
    rng = random.Random(seed)
    controller, capture = start_capture()
    dns = _hostile_dns("127.0.0.1")
    pits = Tarpit(TARPITS, controller.port)
    node = crash_node(base, controller.port, MAILPLANE_OUTBOUND__SMARTHOST="",
                      MAILPLANE_OUTBOUND__DNS_NAMESERVER=f"{dns.host}:{dns.port}",
                      MAILPLANE_OUTBOUND__MX_PORT=str(controller.port),
                      MAILPLANE_SECURITY__LOGIN_BASE_DELAY_SECONDS="0.2",
                      MAILPLANE_SUBMISSION__ACCOUNT_MESSAGES_PER_HOUR="10000",
                      MAILPLANE_SUBMISSION__ACCOUNT_RECIPIENTS_PER_HOUR="10000",
                      MAILPLANE_SUBMISSION__IP_MESSAGES_PER_HOUR="10000",
                      MAILPLANE_SUBMISSION__IP_RECIPIENTS_PER_HOUR="10000")
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        api = node.api()
        made = api.post(f"/v1/contracts/{CONTRACT}/addresses",
                        json={"local_part": "owner", "subdomain": SUBDOMAIN,
                              "accept_terms": True}).json()
        owner, account = made["address"]["address"], made["pop_account"]
        password = made["initial_password"]["password"]
        away = api.post(f"/v1/contracts/{CONTRACT}/addresses",
                        json={"local_part": "away", "subdomain": SUBDOMAIN,
                              "accept_terms": True})
        assert away.status_code == 201, away.text
        reply = api.put(f"/v1/contracts/{CONTRACT}/addresses/{_auto_reply_address()}/auto-reply",
                        json={"enabled": True, "special_senders": [], "special_message": "",
                              "default_message": "Away this week."})
        assert reply.status_code == 200, reply.text
        time.sleep(1.5)  # the policy cache picks the new addresses up
        abuse: Counter[str] = Counter()
        good = GoodClients()
        ledger = Ledger()
        hostile_mail: list[str] = []
        abusers: list[Callable[[], None]] = [
            lambda: _flood(node.ports["mx"], [f"127.0.5.{n}" for n in range(1, 11)], 60, stop,
                           abuse, "mx flood"),
            lambda: _flood(node.ports["pop3"], ["127.0.5.50"], 40, stop, abuse, "pop3 flood"),
            lambda: _flood(node.ports["api"], ["127.0.5.60"], 300, stop, abuse, "api flood"),
            lambda: _harvest(node.ports["mx"], stop, abuse),
            lambda: _hostile(node, stop, abuse),
            *[lambda: _guess(node, account, stop, abuse) for _ in range(4)],
            lambda: _to_hostile(node, owner, account, password, stop, abuse, hostile_mail),
        ]
        threads = [threading.Thread(target=target, daemon=True) for target in abusers]
        for thread in threads:
            thread.start()
        time.sleep(2)  # the floods are in place before the good clients start
        deadline = time.monotonic() + seconds
        run = f"{rng.randrange(1 << 30):x}"
        kinds = ["inbox", "quarantine", "forward"]
        work = [(f"abuse-{run}-{i}@client.example", kinds[i % 3]) for i in range(messages)]
        work_lock = threading.Lock()

        def good_client(index: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                with work_lock:
                    item = work.pop() if work else None
                if item is not None:
                    _good_mx(node, ledger, good, item[0], item[1], run, deadline + 60)
                n += 1
                if index == 0 and n % 3 == 0:
                    _good_pop3(node, account, password, good)
                if index == 1 and n % 3 == 0:
                    _good_submission(node, owner, account, password, good, n)
                if index == 2:
                    _good_api(node, good)
                if item is None:
                    time.sleep(0.5)

        good_threads = [threading.Thread(target=good_client, args=(i,), daemon=True)
                        for i in range(clients)]
        for thread in good_threads:
            thread.start()
        for thread in good_threads:
            thread.join(seconds + 180)
        stop.set()
        for thread in threads:
            thread.join(60)
        # Everything but the mail for hostile destinations is sent, while that mail's
        # attempts hang or its destinations are deferred as dead.
        left = wait_for_queue_drain(node, seconds=120, except_recipients_like=HOSTILE_LIKE)
        assert left == 0, f"{left} outbound job(s) still queued after the abuse run"
        result = audit(node, capture)
        mail = reconcile(ledger, result, 0)
        submitted_lost = [mid for mid in good.submitted if not result.copies.get(mid)]
        hostile_lost = [mid for mid in hostile_mail if not result.copies.get(mid)]
        abuse["hostile-destination connections (never greeted)"] = pits.total
        abuse["hostile-destination DNS queries (never answered)"] = sum(
            1 for name, _kind in dns.queries if name.endswith("silent.hostile.example"))
        return AbuseReport(good, mail, abuse, submitted_lost,
                           node.log_text().count("Traceback"), hostile_lost)
    finally:
        stop.set()
        for client in node.clients:
            client.close()
        node.stop()
        controller.stop()
        pits.close()
        dns.close()
