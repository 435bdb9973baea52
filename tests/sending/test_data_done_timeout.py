"""The reply to the final "." of DATA has its own timeout (``[outbound]
data_done_timeout_seconds``, Postfix's smtp_data_done_timeout, 600 s): receivers scan the
message before they answer, so neither the per-step timeout nor the attempt budget cuts
that wait short — and only that wait has it.  A destination that takes the message and
never answers costs its own slot for that long; its job is retried later (4.4.2: the
receiver may have kept it, a duplicate RFC 1047 accepts rather than a loss), and other
destinations' mail goes out meanwhile.

Real sockets: capture MX servers (aiosmtpd) that answer the dot late or never, a scripted
server that never answers ``DATA``, the DNS stub, the real worker.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from mailplane import metrics
from mailplane.clock import as_utc
from mailplane.config.sections import OutboundConfig
from mailplane.outbound.smtp_transport import data_payload
from tests.factories.outbound import (
    CaptureFactory,
    CaptureHandler,
    DnsStub,
    OutboundEnv,
    WorkerFactory,
)
from tests.factories.queue import job, stage

SLOW = "slow.example"
GOOD = "good.example"


def _route(dns: DnsStub, domain: str, host: str) -> None:
    dns.zone[domain] = {"MX": [(10, f"mx.{domain}")]}
    dns.zone[f"mx.{domain}"] = {"A": [host]}


@dataclass
class LateAfterDot(CaptureHandler):
    """Records the message, then answers the final "." after ``delay`` seconds — or, with
    ``delay`` None, not until the test releases it (the worker has long hung up)."""

    delay: float | None = None
    released: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.to_thread(self.released.wait, self.delay)
        return reply


def _dead_destinations() -> float:
    return metrics.REGISTRY.get_sample_value(
        "mailplane_outbound_dead_destinations_total") or 0.0


async def _until(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    """Wait for ``condition`` (a liveness bound, not a speed claim)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


def test_the_setting_is_600_seconds_by_default_and_bounded() -> None:
    assert OutboundConfig().data_done_timeout_seconds == 600.0
    for wrong in (0, -1, 3601):
        with pytest.raises(ValueError, match="data_done_timeout_seconds"):
            OutboundConfig(data_done_timeout_seconds=wrong)


def test_the_data_is_sent_dot_stuffed_with_crlf_line_ends() -> None:
    assert data_payload(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert data_payload(b".\r\n") == b"..\r\n.\r\n"


async def test_a_slow_verdict_after_the_dot_is_waited_for_past_the_step_timeout_and_budget(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    capture_mx: CaptureFactory, make_worker: WorkerFactory,
) -> None:
    """The receiver scans for 1.5 s: longer than any other step may take (0.5 s) and than
    the whole attempt's budget (1 s) — the message is sent, not cut and sent again."""
    env = make_outbound_env(outbound={"connect_timeout_seconds": 0.5,
                                      "attempt_budget_seconds": 1.0,
                                      "data_done_timeout_seconds": 10.0})
    _route(dns_stub, SLOW, "127.0.0.2")
    slow = capture_mx("127.0.0.2", handler=LateAfterDot(delay=1.5))
    job_id = stage(env, recipients=[f"bob@{SLOW}"])

    await make_worker(env).run_once()

    row = job(env, job_id)
    assert (row.status, row.attempts) == ("sent", 1), row.last_error
    assert [e.rcpt_tos for e in slow.envelopes] == [[f"bob@{SLOW}"]]


async def test_a_destination_silent_after_the_dot_is_retried_later_and_holds_nothing_else(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    capture_mx: CaptureFactory, make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(outbound={"connect_timeout_seconds": 5.0,
                                      "data_done_timeout_seconds": 2.0})
    _route(dns_stub, SLOW, "127.0.0.2")
    _route(dns_stub, GOOD, "127.0.0.3")
    silent = LateAfterDot()
    capture_mx("127.0.0.2", handler=silent)
    good = capture_mx("127.0.0.3")
    stuck = stage(env, recipients=[f"bob@{SLOW}", f"carol@{SLOW}"])
    dead_before = _dead_destinations()
    worker = make_worker(env)
    running = asyncio.create_task(worker.run())
    try:
        await _until(lambda: bool(silent.envelopes), "the silent destination took the data")
        other = stage(env, recipients=[f"dave@{GOOD}"])
        worker.wake()
        await _until(lambda: bool(good.envelopes), "the other destination's mail went out")
        # ... while the silent destination still holds its attempt.
        assert job(env, stuck).attempts == 0
        await _until(lambda: job(env, stuck).attempts == 1, "the silent attempt ended")
    finally:
        await worker.stop()
        await running
        silent.released.set()

    assert job(env, other).status == "sent"
    row = job(env, stuck)
    # Not lost: queued with both recipients, due after a backoff (4xx semantics) ...
    assert (row.status, row.claimed_by) == ("queued", None)
    assert sorted(row.recipients) == [f"bob@{SLOW}", f"carol@{SLOW}"]
    assert as_utc(row.next_attempt_at) > env.clock.now()
    assert "no reply to the end of data within 2s" in row.last_error
    assert "may have been delivered" in row.last_error
    # ... and not sent again meanwhile: the receiver has it once (RFC 1047: if it kept it,
    # the retry will be the one duplicate).
    assert len(silent.envelopes) == 1
    # Not a dead destination: it answered every step before the dot.
    assert _dead_destinations() == dead_before


class SilentAtData:
    """A scripted SMTP server that answers everything up to ``DATA`` and then nothing."""

    def __init__(self, host: str, port: int) -> None:
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _peer = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.1)
                conn.sendall(b"220 silent.example ESMTP\r\n")
                buffer = b""
                while not self._stopping.is_set():
                    try:
                        chunk = conn.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    buffer += chunk
                    while b"\r\n" in buffer:
                        line, buffer = buffer.split(b"\r\n", 1)
                        if line.upper().startswith(b"EHLO"):
                            conn.sendall(b"250-silent.example\r\n250 8BITMIME\r\n")
                        elif line.upper() != b"DATA":
                            conn.sendall(b"250 2.0.0 OK\r\n")

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def silent_at_data(mx_port: int) -> Iterator[SilentAtData]:
    server = SilentAtData("127.0.0.4", mx_port)
    yield server
    server.close()


async def test_the_long_wait_is_for_the_dot_only_not_for_the_data_command(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub,
    make_worker: WorkerFactory, silent_at_data: SilentAtData,
) -> None:
    """``DATA`` unanswered is an ordinary step: given up after the step timeout (0.5 s),
    not after the 60 s the end of data may take."""
    env = make_outbound_env(outbound={"connect_timeout_seconds": 0.5,
                                      "data_done_timeout_seconds": 60.0})
    _route(dns_stub, SLOW, "127.0.0.4")
    job_id = stage(env, recipients=[f"bob@{SLOW}"])

    started = time.monotonic()
    await make_worker(env).run_once()

    assert time.monotonic() - started < 30  # nowhere near the 60 s of the end of data
    row = job(env, job_id)
    assert (row.status, row.attempts) == ("queued", 1)
    assert "lost during DATA" in row.last_error
    assert "end of data" not in row.last_error
