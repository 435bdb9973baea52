"""DKIM signing's cost (issue 21, SPEC §8b), two figures measured in the same run:

1. **Per message**: :func:`mailplane.signing.outbound.stamp` on N messages of 10 KB and
   100 KB with Ed25519 alone, RSA-2048 alone and both (what mailplane sends), against
   dkimpy's own ``dkim.sign`` with RSA (pure-Python RSA and canonicalization — why those
   steps are ours, docs/architecture.md).  Rounds alternate between the variants, so a
   busy neighbour slows all of them alike.
2. **The queue**: an outbound worker draining N staged 10 KB jobs to a smarthost (an
   aiosmtpd sink on loopback) with signing on (both keys) and off (``[dkim] enabled =
   false``), alternately: messages/s and the ratio.

Run alone: ``python -m bench.signing [--messages 200] [--jobs 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import dkim
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

from bench.servers import free_port
from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings, load_settings
from mailplane.mailstore.spool import stage_job
from mailplane.outbound.worker import OutboundWorker
from mailplane.signing import selectors
from mailplane.signing.outbound import KeyRing, load_key_ring, stamp
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade

KB = 1024
SIZES = (10 * KB, 100 * KB)
ROUNDS = 3
BASES = ("example.net",)


def message(size: int, number: int = 0) -> bytes:
    head = (f"From: Taro <taro@e06.example.net>\r\nTo: bob@dest.test\r\n"
            f"Subject: bench {number}\r\nDate: Mon, 23 Nov 2026 12:00:00 +0900\r\n"
            f"Message-ID: <bench{number}@e06.example.net>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=UTF-8\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, 0123456789 times over.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def _settings(workdir: Path, **overrides: Any) -> Settings:
    return load_settings(state_dir=str(workdir), database_url=f"sqlite:///{workdir / 'b.db'}",
                         base_domains=list(BASES), **overrides)


def _keys(settings: Settings) -> KeyRing:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    now = FrozenClock().now()
    for algorithm in ("ed25519", "rsa"):
        name = f"bench-{algorithm}"
        selectors.generate_selectors(settings, factory, algorithms=[algorithm], now=now,
                                     name=name)
        selectors.publish(factory, selector=name, now=now)
        selectors.activate(settings, factory, selector=name, now=now, lookup=None)
    ring = load_key_ring(settings, factory)
    engine.dispose()
    return ring


def per_message(ring: KeyRing, count: int) -> list[dict[str, Any]]:
    """ms per message for each variant and size (median of the rounds)."""
    rsa_only = KeyRing(tuple(k for k in ring.keys if k.algorithm == "rsa"))
    rsa_key = rsa_only.keys[0]
    variants = {
        "ed25519": lambda m: stamp(m, KeyRing(tuple(k for k in ring.keys
                                                    if k.algorithm == "ed25519")),
                                   mail_from="", kind="submission", base_domains=BASES,
                                   arc_srv_id=None),
        "rsa": lambda m: stamp(m, rsa_only, mail_from="", kind="submission",
                               base_domains=BASES, arc_srv_id=None),
        "both": lambda m: stamp(m, ring, mail_from="", kind="submission",
                                base_domains=BASES, arc_srv_id=None),
        "dkimpy-rsa": lambda m: dkim.sign(m, rsa_key.selector.encode(), b"example.net",
                                          rsa_key.pem, canonicalize=(b"relaxed", b"relaxed")),
    }
    rows = []
    for size in SIZES:
        sample = message(size)
        timings: dict[str, list[float]] = {name: [] for name in variants}
        for _round in range(ROUNDS):
            for name, sign in variants.items():
                started = time.perf_counter()
                for _ in range(count):
                    sign(sample)
                timings[name].append((time.perf_counter() - started) / count * 1e3)
        for name, values in timings.items():
            ms = statistics.median(values)
            rows.append({"size": size, "variant": name, "ms": ms, "per_s": 1e3 / ms})
    return rows


class _Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        self.count += 1
        return "250 2.0.0 ok"


async def _drain(settings: Settings, jobs: int, size: int) -> float:
    """Stage ``jobs`` jobs and time one worker sending them all; messages/s."""
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    clock = FrozenClock()
    with factory() as session:
        for number in range(jobs):
            stage_job(session, spool_dir=settings.spool_dir, kind="submission",
                      mail_from="taro@e06.example.net", recipients=["bob@dest.test"],
                      message=message(size, number), now=clock.now())
        session.commit()
    worker = OutboundWorker(settings, factory, clock, worker_id="bench:1", batch_size=50)
    started = time.perf_counter()
    while await worker.run_once():
        pass
    elapsed = time.perf_counter() - started
    engine.dispose()
    return jobs / elapsed


def queue(workdir: Path, jobs: int, size: int = 10 * KB) -> dict[str, Any]:
    sink = _Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    rates: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for number in range(ROUNDS):
            for mode in ("on", "off"):
                directory = workdir / f"queue-{mode}-{number}"
                directory.mkdir(parents=True)
                settings = _settings(directory, dkim={"enabled": mode == "on"},
                                     outbound={"smarthost": "127.0.0.1",
                                               "smarthost_port": port})
                if mode == "on":
                    _keys(settings)
                rates[mode].append(asyncio.run(_drain(settings, jobs, size)))
    finally:
        controller.stop()
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    return {"jobs": jobs, "size": size, "sent": sink.count, "on_per_s": on,
            "off_per_s": off, "ratio": on / off}


def run(workdir: Path, *, messages: int, jobs: int) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    ring = _keys(_settings(workdir / "keys"))
    return {"per_message": per_message(ring, messages), "queue": queue(workdir, jobs)}


def format_result(result: dict[str, Any]) -> str:
    lines = ["DKIM signing, ms per message (median of rounds; msg/s of one core):"]
    for size in SIZES:
        rows = {r["variant"]: r for r in result["per_message"] if r["size"] == size}
        cells = [f"{name} {row['ms']:.2f} ({row['per_s']:.0f}/s)"
                 for name, row in rows.items()]
        lines.append(f"  {size // KB:>3} KB: " + ", ".join(cells) + f"; dkimpy-rsa / rsa "
                     f"{rows['dkimpy-rsa']['ms'] / rows['rsa']['ms']:.1f}x")
    q = result["queue"]
    lines.append(f"  queue ({q['jobs']} jobs of {q['size'] // KB} KB to a smarthost sink): "
                 f"signing on {q['on_per_s']:.0f} msg/s, off {q['off_per_s']:.0f} msg/s, "
                 f"on/off {q['ratio']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailplane-signing-"))
    try:
        print(format_result(run(workdir, messages=args.messages, jobs=args.jobs)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
