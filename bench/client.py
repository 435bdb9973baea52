"""Load generators: a bundled asyncio SMTP client, and Postfix's ``smtp-source`` when present.

Both open one connection per message (what an MX sees from the Internet, and
``smtp-source``'s default), so the server's per-connection cost is part of every figure.
The asyncio client also measures the DATA-to-250 latency of each message: from writing the
``DATA`` command to reading the final reply after ``<CRLF>.<CRLF>``.  ``smtp-source`` gives
throughput only (it reports no per-message timing) and sends every message to one recipient.
"""

from __future__ import annotations

import asyncio
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

SMTP_SOURCE = shutil.which("smtp-source", path="/usr/sbin:/usr/bin:/usr/local/sbin")


@dataclass(slots=True)
class LoadResult:
    sent: int = 0
    failed: int = 0
    elapsed: float = 0.0
    #: ``time.perf_counter()`` when the first connection was opened.
    started: float = 0.0
    #: CPU seconds the client itself used (this process, or smtp-source).
    client_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""


def make_message(size: int, *, sender: str, to: str,
                 sign: Callable[[bytes], bytes] | None = None) -> bytes:
    """A plain RFC 5322 message of about ``size`` bytes with 76-character body lines;
    ``sign`` (a DKIM signer) adds its signature and the body is shortened to match."""
    head = (
        f"From: Bench Sender <{sender}>\r\nTo: <{to}>\r\nSubject: benchmark message\r\n"
        "Date: Mon, 23 Nov 2026 12:00:00 +0900\r\nMessage-ID: <bench@sender.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog; pack my box with liquor jugs.\r\n"
    if sign is None:
        return head + line * max(1, (size - len(head)) // len(line))
    overhead = len(sign(head + line)) - len(head + line)
    return sign(head + line * max(1, (size - len(head) - overhead) // len(line)))


def wire_data(message: bytes) -> bytes:
    """Dot-stuff (RFC 5321 §4.5.2) and terminate with ``<CRLF>.<CRLF>``."""
    if message.startswith(b"."):
        message = b"." + message
    message = message.replace(b"\r\n.", b"\r\n..")
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


class _ReplyError(Exception):
    pass


async def _reply(reader: asyncio.StreamReader, expect: int) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise _ReplyError("connection closed")
        if line[3:4] != b"-":
            break
    if not line.startswith(str(expect).encode()[:1]):
        raise _ReplyError(line.decode("ascii", "replace").strip())


async def _one_message(
    host: str, port: int, sender: str, recipient: str, payload: bytes, step_seconds: float
) -> float:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), step_seconds)
    try:
        await asyncio.wait_for(_reply(reader, 220), step_seconds)
        for command, expect in ((b"EHLO client.bench.example\r\n", 250),
                                (f"MAIL FROM:<{sender}>\r\n".encode(), 250),
                                (f"RCPT TO:<{recipient}>\r\n".encode(), 250)):
            writer.write(command)
            await asyncio.wait_for(_reply(reader, expect), step_seconds)
        started = time.perf_counter()
        writer.write(b"DATA\r\n")
        await asyncio.wait_for(_reply(reader, 354), step_seconds)
        writer.write(payload)
        await asyncio.wait_for(_reply(reader, 250), step_seconds)
        latency = time.perf_counter() - started
        writer.write(b"QUIT\r\n")
        await asyncio.wait_for(_reply(reader, 221), step_seconds)
        return latency
    finally:
        writer.close()


async def run_asyncio_load(
    host: str, port: int, *, sessions: int, messages: int, size: int,
    recipients: Sequence[str], sender: str = "bench@sender.example", step_seconds: float = 60.0,
    sign: Callable[[bytes], bytes] | None = None,
) -> LoadResult:
    """``sessions`` concurrent clients send ``messages`` in total, recipients round-robin
    (each message DKIM-signed by ``sign`` when given)."""
    payloads = {r: wire_data(make_message(size, sender=sender, to=r, sign=sign))
                for r in recipients}
    result = LoadResult()
    counter = iter(range(messages))

    async def session_loop() -> None:
        for n in counter:
            recipient = recipients[n % len(recipients)]
            try:
                result.latencies.append(await _one_message(
                    host, port, sender, recipient, payloads[recipient], step_seconds))
                result.sent += 1
            except (OSError, TimeoutError, _ReplyError) as exc:
                result.failed += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"

    cpu = time.process_time()
    result.started = started = time.perf_counter()
    await asyncio.gather(*(session_loop() for _ in range(sessions)))
    result.elapsed = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu
    return result


def run_smtp_source(
    host: str, port: int, *, sessions: int, messages: int, size: int, recipient: str,
    sender: str = "bench@sender.example", timeout: float = 300.0,
) -> LoadResult:
    """Postfix's C client: throughput only (no per-message latency), one recipient."""
    if SMTP_SOURCE is None:
        raise FileNotFoundError("smtp-source is not installed (Debian package postfix)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
         "-f", sender, "-t", recipient, f"{host}:{port}"],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    failed = 0 if proc.returncode == 0 else messages
    return LoadResult(sent=messages - failed, failed=failed, elapsed=elapsed, started=started,
                      client_cpu=(after.ru_utime + after.ru_stime)
                      - (before.ru_utime + before.ru_stime),
                      first_error=(proc.stderr or proc.stdout).strip()[:300])


def main() -> None:
    """Ad-hoc load: ``python -m bench.client PORT SESSIONS MESSAGES SIZE RCPT...``."""
    import sys

    port, sessions, messages, size = (int(v) for v in sys.argv[1:5])
    result = asyncio.run(run_asyncio_load("127.0.0.1", port, sessions=sessions,
                                          messages=messages, size=size,
                                          recipients=sys.argv[5:]))
    print(f"sent={result.sent} failed={result.failed} {result.sent / result.elapsed:.0f} "
          f"msgs/s {result.first_error}")


if __name__ == "__main__":
    main()
