"""The mixed-abuse phase of ``make soak`` (issue 15): good clients send, fetch, submit and
manage while abusers flood every listener, guess passwords in parallel, harvest
addresses and send hostile MIME and headers — all at once, against one real node.  A
customer also keeps sending to hostile destinations (issue 20): a domain whose eight MX
hosts accept and never greet, and one whose DNS never answers; the node routes by MX
lookup (a DNS stub on loopback), so the good forwards to ``remote.example`` must still
go out while those attempts hang, and the hostile mail must stay queued, not lost.

Two more abusers try to make the node send what its customers did not (issue 20):

- **SRS guessing**: a client with no account sends null-sender "bounces" to forged SRS
  addresses of the node's SRS domain as fast as the node answers — random hashes with
  today's timestamp, the old 4-character form, SRS1 built on a forged SRS0, and addresses
  whose hash verifies (the secret leaked) but that the node never emitted.  Every one must
  be refused (``550 5.1.1``, the tarpit's 4xx, ``421``), none relayed (counted at the
  capture MX that stands for every remote domain), and the node's log must not grow with
  the guesses (its growth during the phase is measured: the lines about SRS or naming the
  guesser are bounded by the log's once-a-minute-per-kind throttle).
- **A forwarding graph**: eight hosted addresses of the contract forward to each other —
  each to the next three (a ring and its chords), three of them to one external address
  instead of their third neighbour, with keep-copy OFF — and anonymous MX mail is sprayed
  into it.  Each mailbox must get at most one copy of a message and the external address
  at most one; the addresses that keep a copy get exactly one, and of the three exits
  exactly one has each message (the one that sent it out, or kept it when over its limit);
  the forwards out stop at ``forwarding.remote_messages_per_hour``, exactly.

It reports, for the good clients, every request and its answer class (no 5xx and no
request left unanswered is the bar), and for the mail they sent, the same audit as the
crash run (0 accepted messages lost).  Abusers speak from their own loopback addresses
(127.0.x.y), good clients from 127.0.0.1, so per-IP limits tell them apart.
"""

from __future__ import annotations

import itertools
import math
import poplib
import random
import smtplib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mailplane.mail.srs import Srs
from tests.durability.harness import (
    CONTRACT,
    SUBDOMAIN,
    CaptureLog,
    Ledger,
    Report,
    audit,
    crash_node,
    hosted,
    identify,
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


@dataclass(frozen=True)
class LogGrowth:
    """What the node's log grew by while the abusers ran."""

    bytes: int
    lines: int
    #: Lines about SRS or naming an SRS guesser's host, and their bound: every such line
    #: is throttled to one a minute per kind, however many guesses arrive.
    srs_lines: int
    srs_bound: int


@dataclass
class GraphReport:
    """Anonymous mail sprayed into the forwarding graph, counted per copy."""

    #: Messages the sprayer saw 250 for.
    accepted: int
    #: Most copies of one message in one mailbox, or at the external address.
    most_copies: int
    #: forwarder -> messages it sent to the external address (captured there), and
    #: messages it kept in its inbox instead, over its hourly limit.
    external: Counter[str]
    withheld: Counter[str]
    #: ``forwarding.remote_messages_per_hour`` and what one forwarder may send out in the
    #: phase (the limit; more only by the sliding window's rounding if an hour began).
    limit: int
    bound: int
    exact: bool
    problems: list[str]

    def at_limit(self) -> list[str]:
        """Forwarders that had more messages to send out than the limit allows."""
        return sorted(f for f in set(self.external) | set(self.withheld)
                      if self.external[f] + self.withheld[f] > self.limit)


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
    #: Forged "bounces" to SRS addresses that reached the capture MX: none may.
    srs_relayed: int = 0
    log: LogGrowth | None = None
    graph: GraphReport | None = None

    @property
    def srs_ok(self) -> bool:
        """Every SRS guess refused, none relayed, and the log not growing with them."""
        return (not self.abuse["srs guesses accepted"] and not self.srs_relayed
                and not self.abuse["srs guesses answered otherwise"]
                and (self.log is None or self.log.srs_lines <= self.log.srs_bound))

    @property
    def ok(self) -> bool:
        return (not self.good.count("5xx") and not self.good.count("unanswered")
                and not self.mail.lost and not self.submitted_lost and not self.tracebacks
                and not self.mail.unexplained_duplicates and not self.mail.misplaced
                and not self.hostile_lost and self.srs_ok
                and (self.graph is None or not self.graph.problems))

    def problems(self) -> list[str]:
        """Every problem line, for a failure message."""
        found = [*self.good.problems, *self.mail.lost, *self.submitted_lost,
                 *self.mail.unexplained_duplicates, *self.mail.misplaced,
                 *(f"hostile-destination mail lost: {mid}" for mid in self.hostile_lost)]
        if not self.srs_ok:
            found.append("SRS guessing: a guess accepted or relayed, or the log grew with them")
        if self.graph is not None:
            found += self.graph.problems
        return found

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
            ("SRS guesses relayed (at the capture MX)", self.srs_relayed),
        ]
        if self.log is not None:
            rows += [("node log growth during the phase (bytes)", self.log.bytes),
                     ("  lines", self.log.lines),
                     ("  lines about SRS or an SRS guesser", self.log.srs_lines),
                     ("  bound on those (throttled)", self.log.srs_bound)]
        if self.graph is not None:
            graph = self.graph
            rows += [("forwarding graph: messages 250'd", graph.accepted),
                     ("  most copies of one message in one place", graph.most_copies),
                     ("  forwarded out, per forwarder at most", graph.bound),
                     *((f"  forwarded out by {f}", n) for f, n in sorted(graph.external.items())),
                     *((f"  kept in {f} over its limit", n)
                       for f, n in sorted(graph.withheld.items())),
                     ("  problems", len(graph.problems))]
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
                   "bad.example", SRS_OTHER_FORWARDER):
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


# --- SRS guessing (issue 20) -----------------------------------------------------------

#: The guesser's hosts (the node's budget of invalid SRS recipients is per client IP) and
#: the sessions it keeps open from each.
SRS_GUESSER_NET = b"127.0.10."
SRS_GUESSERS = [f"{SRS_GUESSER_NET.decode()}{n}" for n in range(1, 5)]
SRS_SESSIONS_PER_HOST = 2
#: RCPTs sent at once (pipelined, RFC 2920) before their replies are read.
SRS_BATCH = 10
#: Where the forged addresses say a bounce goes: domains routed to the capture MX, so a
#: relayed bounce is counted there.
SRS_VICTIM_DOMAIN = "remote.example"
SRS_OTHER_FORWARDER = "forwarder.example"
SRS_MESSAGE_IDS = "srs-guess-"
#: Kinds of SRS refusal the node logs each once a minute (mailplane/smtp/srs_returns.py:
#: not_null, invalid, not_emitted, rate_address, rate_ip, not_a_bounce, virus, spam), the
#: MX's "closing a session after N errors" and its connection refusals, with room for the
#: lines that fold repeats.
SRS_LOG_KINDS = 12


def srs_guesses(domain: str, secret: str, rng: random.Random) -> Iterator[str]:
    """Forged SRS addresses of ``domain``, endlessly: a random 10-character hash with
    today's timestamp (as good as a guess gets without the secret), the old 4-character
    form, an SRS1 built on another forwarder's forged SRS0, the first kind lower-cased,
    and one whose hash verifies (``secret`` leaked) that the node never emitted."""
    for n in itertools.count():
        victim = f"victim{n}@{SRS_VICTIM_DOMAIN}"
        guessed = Srs(secret=f"guess-{rng.random()}", domain=domain)
        kind = n % 5
        if kind == 0:
            yield guessed.forward(victim)
        elif kind == 1:
            tag, digest, rest = guessed.forward(victim).split("=", 2)
            yield f"{tag}={digest[:4]}={rest}"
        elif kind == 2:
            elsewhere = Srs(secret="elsewhere", domain=SRS_OTHER_FORWARDER).forward(victim)
            yield guessed.forward(elsewhere)
        elif kind == 3:
            yield guessed.forward(victim).lower()
        else:
            yield Srs(secret=secret, domain=domain).forward(victim)


class _Replies:
    """SMTP replies off a raw socket with a short timeout, so a tarpitted reply does not
    hold an abuser past the end of the phase."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock, self.stop, self.buffer = sock, stop, b""
        sock.settimeout(1.0)

    def line(self) -> bytes:
        """One line; b"" when the server closed the connection or the phase ended."""
        while b"\n" not in self.buffer:
            if self.stop.is_set():
                return b""
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return b""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def reply(self) -> bytes:
        """A whole reply (its last line)."""
        while True:
            line = self.line()
            if len(line) < 4 or line[3:4] != b"-":
                return line


def _bounce(address: str, n: int) -> bytes:
    """A delivery report (RFC 3464) as a relay attempt would send it."""
    return (f"From: MAILER-DAEMON@{SRS_VICTIM_DOMAIN}\r\nTo: <{address}>\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <{SRS_MESSAGE_IDS}{n}@{SRS_VICTIM_DOMAIN}>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
            "\r\n--b\r\nContent-Type: text/plain\r\n\r\nBuy now.\r\n"
            "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.{SRS_VICTIM_DOMAIN}\r\n\r\n"
            f"Final-Recipient: rfc822; {MESH_OUT}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            "--b--\r\n.\r\n").encode()


def _guess_srs(node: Any, source: str, guesses: Callable[[], str], stop: threading.Event,
               stats: Counter[str]) -> None:
    """Null-sender mail to forged SRS addresses as fast as the node answers: RCPTs in
    pipelined batches, DATA if one is ever accepted, a new session as soon as the node
    closes one."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", node.ports["mx"]), timeout=30,
                                          source_address=(source, 0)) as sock:
                replies = _Replies(sock, stop)
                if not replies.reply().startswith(b"220"):
                    stats["srs guess sessions refused at once"] += 1
                    continue
                sock.sendall(b"EHLO guesser.example\r\n")
                replies.reply()
                sock.sendall(b"MAIL FROM:<>\r\n")
                if not replies.reply().startswith(b"250"):
                    continue
                stats["srs guess sessions"] += 1
                while not stop.is_set() and _guess_batch(sock, replies, guesses, stats):
                    pass
        except OSError:
            stats["srs guess connection errors"] += 1


def _guess_batch(sock: socket.socket, replies: _Replies, guesses: Callable[[], str],
                 stats: Counter[str]) -> bool:
    """One batch of guesses; False when the session is over."""
    batch = [guesses() for _ in range(SRS_BATCH)]
    sock.sendall(b"".join(b"RCPT TO:<%s>\r\n" % a.encode() for a in batch))
    stats["srs guesses sent"] += len(batch)
    accepted: list[str] = []
    for address in batch:
        reply = replies.reply()
        if not reply:
            return False
        code = reply[:3].decode("ascii", "replace")
        stats["srs guesses answered"] += 1
        if code == "250":
            stats["srs guesses accepted"] += 1
            accepted.append(address)
        elif code in ("550", "421") or code.startswith("4"):
            stats[f"srs guesses answered {code}"] += 1
        else:
            stats["srs guesses answered otherwise"] += 1
        if code == "421":
            return False
    if accepted:  # must never happen: try to have it relayed
        sock.sendall(b"DATA\r\n")
        if replies.reply().startswith(b"354"):
            sock.sendall(_bounce(accepted[0], stats["srs guesses sent"]))
            stats["srs bounce answered " + replies.reply()[:3].decode("ascii", "replace")] += 1
        return False
    return True


# --- the forwarding graph (issue 20) ---------------------------------------------------

#: Hosted addresses forwarding to each other: each to the next three (a ring and its
#: chords), except MESH_EXITS, which forward to the next two and to MESH_OUT, with
#: keep-copy OFF.
MESH = [f"mesh{n}" for n in range(8)]
MESH_EXITS = (2, 5, 7)
MESH_OUT = f"mesh-out@{SRS_VICTIM_DOMAIN}"
MESH_SPRAYERS = ["127.0.12.1", "127.0.12.2"]
MESH_MESSAGE_IDS = "mesh-"


def mesh(n: int) -> str:
    return f"{MESH[n % len(MESH)]}@{SUBDOMAIN}.example.net"


def _forwarding_graph(api: httpx.Client) -> None:
    """The graph, through the API (a hosted destination must exist first)."""
    addresses = f"/v1/contracts/{CONTRACT}/addresses"
    for local in MESH:
        made = api.post(addresses, json={"local_part": local, "subdomain": SUBDOMAIN,
                                          "accept_terms": True, "accept_charge": True})
        assert made.status_code == 201, made.text
    for n in range(len(MESH)):
        exit_ = n in MESH_EXITS
        hops = [mesh(n + 1), mesh(n + 2), MESH_OUT if exit_ else mesh(n + 3)]
        answer = api.put(f"{addresses}/{mesh(n)}/forwarding",
                         json={"destinations": hops, "keep_copy": not exit_})
        assert answer.status_code == 200, answer.text


def _spray(node: Any, source: str, numbers: Iterator[int], stop: threading.Event,
           stats: Counter[str], accepted: list[str]) -> None:
    """Anonymous MX mail into the graph as fast as the node takes it, message after
    message in one session, entering it at one address, at two, or at all eight."""
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=60,
                              source_address=(source, 0)) as smtp:
                smtp.ehlo("spray.example")
                while not stop.is_set():
                    n = next(numbers)
                    entry = n * 3 % len(MESH)
                    recipients = [mesh(entry + i) for i in
                                  {0: [0], 1: [0, 4], 2: [0], 3: range(len(MESH))}[n % 4]]
                    mid = f"{MESH_MESSAGE_IDS}{n}@spray.example"
                    raw = (f"From: spray@bad.example\r\nTo: {', '.join(recipients)}\r\n"
                           f"Subject: into the graph {n}\r\nMessage-ID: <{mid}>\r\n\r\n"
                           "once, or a hundred times?\r\n").encode()
                    try:
                        refused = smtp.sendmail("spray@bad.example", recipients, raw)
                        stats["graph messages accepted"] += 1
                        stats["graph recipients refused"] += len(refused)
                        accepted.append(mid)
                    except smtplib.SMTPResponseException as exc:
                        stats[f"graph messages answered {exc.smtp_code}"] += 1
                    except smtplib.SMTPRecipientsRefused:
                        stats["graph messages refused at RCPT"] += 1
        except (OSError, smtplib.SMTPException):
            stats["graph connection errors"] += 1
            stop.wait(0.2)


def _graph_report(node: Any, capture: CaptureLog, accepted: list[str], *, limit: int,
                  seconds: float, exact: bool) -> GraphReport:
    """Every copy of the sprayed messages: in the graph's mailboxes (by Message-ID) and at
    the external address (with the forwarder that sent it, its top ``Delivered-To``)."""
    copies: Counter[tuple[str, str]] = Counter()
    for local in MESH:
        for sub in ("new", "cur"):
            folder = node.state_dir / "mail" / f"{SUBDOMAIN}.example.net" / local / sub
            for path in folder.glob("*"):
                mid, _queue_id = identify(path.read_bytes())
                if mid.startswith(MESH_MESSAGE_IDS):
                    copies[(mid, local)] += 1
    out: Counter[str] = Counter()
    external: Counter[str] = Counter()
    with capture.lock:
        envelopes = list(capture.envelopes)
    for envelope in envelopes:
        if MESH_OUT in envelope.recipients:
            out[envelope.message_id] += 1
            external[envelope.delivered_to] += 1
    problems: list[str] = []
    withheld: Counter[str] = Counter()
    keepers = [local for n, local in enumerate(MESH) if n not in MESH_EXITS]
    exits = [MESH[n] for n in MESH_EXITS]
    acknowledged = set(accepted)
    for mid in sorted(acknowledged | {mid for mid, _ in copies} | set(out)):
        many = [f"{local} x{copies[(mid, local)]}" for local in MESH
                if copies[(mid, local)] > 1]
        if out[mid] > 1:
            many.append(f"{MESH_OUT} x{out[mid]}")
        if many:
            problems.append(f"graph: {mid} multiplied: {', '.join(many)}")
        for local in exits:
            if copies[(mid, local)]:
                withheld[mesh(MESH.index(local))] += 1
        if mid not in acknowledged:
            continue  # the sprayer never saw its 250: at most one copy is all we can ask
        missing = [local for local in keepers if not copies[(mid, local)]]
        if missing:
            problems.append(f"graph: {mid} lost from {', '.join(missing)}")
        at_exits = sum(copies[(mid, local)] for local in exits) + out[mid]
        if at_exits != 1:
            problems.append(f"graph: {mid} has {at_exits} copies among the exits and "
                            f"{MESH_OUT} (one: sent out, or kept over the limit)")
    # The sliding window: an hour that began during the phase lets the rounding of the
    # previous hour's weighted count through (send_quota.charge_in).
    bound = limit if exact else limit + 1 + math.ceil(limit * seconds / 3600)
    for forwarder in sorted(set(external) | set(withheld)):
        sent, kept = external[forwarder], withheld[forwarder]
        if sent > bound:
            problems.append(f"graph: {forwarder} forwarded {sent} out (limit {limit})")
        elif exact and sent != min(limit, sent + kept):
            problems.append(f"graph: {forwarder} forwarded {sent} out and kept {kept}: "
                            f"expected exactly min({limit}, {sent + kept})")
    if set(external) - {mesh(n) for n in MESH_EXITS}:
        problems.append(f"graph: forwarded out by {sorted(external)}")
    return GraphReport(
        accepted=len(accepted),
        most_copies=max([*copies.values(), *out.values(), 0]),
        external=external, withheld=withheld, limit=limit, bound=bound, exact=exact,
        problems=problems)


def _log_growth(node: Any, start: int, *, seconds: float) -> LogGrowth:
    """The node's log since offset ``start``."""
    assert node.log_path is not None
    with node.log_path.open("rb") as log:
        log.seek(start)
        grown = log.read()
    lines = grown.splitlines()
    srs_lines = sum(1 for line in lines if b"SRS" in line or SRS_GUESSER_NET in line)
    return LogGrowth(bytes=len(grown), lines=len(lines), srs_lines=srs_lines,
                     srs_bound=SRS_LOG_KINDS * (math.ceil(seconds / 60) + 1))


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
                    seed: int | None = None, forward_limit: int | None = None) -> AbuseReport:
    """``forward_limit``: ``forwarding.remote_messages_per_hour`` of the node (recipients:
    three times it); by default just above the good forwards (a third of ``messages``,
    which must all go out), so a short phase shows the sprayed graph reaching it."""
    rng = random.Random(seed)
    limit = forward_limit if forward_limit is not None else messages // 3 + 5
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
                      MAILPLANE_SUBMISSION__IP_RECIPIENTS_PER_HOUR="10000",
                      MAILPLANE_FORWARDING__REMOTE_MESSAGES_PER_HOUR=str(limit),
                      MAILPLANE_FORWARDING__REMOTE_RECIPIENTS_PER_HOUR=str(3 * limit))
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
        _forwarding_graph(api)
        time.sleep(1.5)  # the policy cache picks the new addresses up
        node.settle()
        abuse: Counter[str] = Counter()
        good = GoodClients()
        ledger = Ledger()
        hostile_mail: list[str] = []
        guess_lock = threading.Lock()
        forged = srs_guesses(node.env["MAILPLANE_SRS__DOMAIN"],
                             node.env["MAILPLANE_SRS__SECRET"], rng)

        def guesses() -> str:
            with guess_lock:
                return next(forged)

        numbers = itertools.count()
        sprayed: list[str] = []
        abusers: list[Callable[[], None]] = [
            lambda: _flood(node.ports["mx"], [f"127.0.5.{n}" for n in range(1, 11)], 60, stop,
                           abuse, "mx flood"),
            lambda: _flood(node.ports["pop3"], ["127.0.5.50"], 40, stop, abuse, "pop3 flood"),
            lambda: _flood(node.ports["api"], ["127.0.5.60"], 300, stop, abuse, "api flood"),
            lambda: _harvest(node.ports["mx"], stop, abuse),
            lambda: _hostile(node, stop, abuse),
            *[lambda: _guess(node, account, stop, abuse) for _ in range(4)],
            lambda: _to_hostile(node, owner, account, password, stop, abuse, hostile_mail),
            *[lambda host=host: _guess_srs(node, host, guesses, stop, abuse)
              for host in SRS_GUESSERS for _ in range(SRS_SESSIONS_PER_HOST)],
            *[lambda host=host: _spray(node, host, numbers, stop, abuse, sprayed)
              for host in MESH_SPRAYERS],
        ]
        assert node.log_path is not None
        log_start = node.log_path.stat().st_size
        started, started_at = time.monotonic(), time.time()
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
        phase = time.monotonic() - started
        same_hour = int(started_at // 3600) == int(time.time() // 3600)
        log = _log_growth(node, log_start, seconds=phase)
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
        with capture.lock:
            srs_relayed = sum(
                1 for e in capture.envelopes
                if e.message_id.startswith(SRS_MESSAGE_IDS)
                or any(r.startswith("victim") or r.endswith(f"@{SRS_OTHER_FORWARDER}")
                       for r in e.recipients))
        graph = _graph_report(node, capture, list(sprayed), limit=limit, seconds=phase,
                              exact=same_hour)
        return AbuseReport(good, mail, abuse, submitted_lost,
                           node.log_text().count("Traceback"), hostile_lost,
                           srs_relayed=srs_relayed, log=log, graph=graph)
    finally:
        stop.set()
        for client in node.clients:
            client.close()
        node.stop()
        controller.stop()
        pits.close()
        dns.close()
