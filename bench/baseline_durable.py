"""``baseline-durable``: the least any durable Python MX must do (issue 6).

Stock aiosmtpd 1.4.6 ``SMTP`` with a handler that writes each message into a Maildir:
``tmp/`` file written and fsynced, renamed into ``new/``, ``new/`` fsynced — then 250.
The blocking part runs in a thread (as any asyncio server must do it), one process, one
loop.  No filters, no database, no recipient checks: mailplane is measured against this.

Run: ``python -m bench.baseline_durable --port 2600 --maildir /tmp/base``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

_COUNTER = itertools.count()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def deliver(maildir: Path, data: bytes) -> None:
    """Blocking: tmp write + fsync, rename into new/, fsync new/."""
    name = f"{os.getpid()}.{next(_COUNTER)}"
    tmp = maildir / "tmp" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, maildir / "new" / name)
    _fsync_dir(maildir / "new")


class DurableHandler:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _maildir(self, address: str) -> Path:
        path = self.root / address.lower().replace("/", "_")
        if not (path / "new").is_dir():
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        maildir = self._maildir(envelope.rcpt_tos[0])
        await asyncio.to_thread(deliver, maildir, data)
        return "250 OK"


async def serve(host: str, port: int, root: Path, *, fast: bool = False) -> None:
    """``fast``: the same handler on mailplane's FastSMTP, to measure what the cached hook
    table and chunked DATA reading save (docs/performance.md)."""
    loop = asyncio.get_running_loop()
    handler = DurableHandler(root)
    protocol: type[SMTP] = SMTP
    if fast:
        from mailplane.smtp.protocol import FastSMTP

        protocol = FastSMTP
    server = await loop.create_server(
        lambda: protocol(handler, hostname="baseline.bench", loop=loop), host=host,
        port=port, backlog=512,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--fast", action="store_true", help="use mailplane's FastSMTP")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.maildir, fast=args.fast))


if __name__ == "__main__":
    main()
