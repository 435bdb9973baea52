"""Outbound queue benchmark (issue 20): how fast good remote mail drains, alone and with
hostile destinations queued ahead of it, measured in the same run.

One :class:`~mailplane.outbound.worker.OutboundWorker` (in this process, SQLite) drains
``jobs`` forwards of 10 KB to ``good.example``, whose MX is a sink in its own process
(Postfix's ``smtp-sink`` if installed, else aiosmtpd's ``Sink``), found through a DNS
server on loopback.  In the *hostile* runs, ``hostile`` older jobs sit ahead of them: half
to ``tarpit.example`` (eight MX hosts that accept and never greet), half to
``silent.example`` (DNS that never answers).  The figure is good msgs/s to the last good
job's outcome, and the ratio hostile ÷ clean.

Two configurations: ``concurrent`` (the defaults of ``[outbound]``) and ``serial``
(``concurrency_limit = destination_concurrency_limit = 1``, no dead-destination
deferral: one attempt at a time, as the worker was before issue 20, though with its
bounded MX addresses and sessions).  The stuck steps wait ``step_seconds`` each (DNS,
greeting) instead of the production 10 / 30 s, so the serial runs end in seconds.

Run alone: ``python -m bench.outbound_bench --jobs 300 --hostile 10``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.servers import REPO, free_port, wait_ready
from mailplane.clock import SystemClock
from mailplane.config.settings import Settings, load_settings
from mailplane.mailstore.spool import stage_job
from mailplane.outbound.worker import OutboundWorker
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import OutboundJob
from tests.factories.dns import DnsStub
from tests.factories.outbound import Tarpit

TARPITS = [f"127.0.9.{n}" for n in range(1, 9)]
CONFIGS: dict[str, dict[str, Any]] = {
    "concurrent": {},
    "serial": {"concurrency_limit": 1, "destination_concurrency_limit": 1,
               "dead_destination_seconds": 0},
}


def _zone() -> dict[str, dict[str, list[Any]]]:
    zone: dict[str, dict[str, list[Any]]] = {
        "good.example": {"MX": [(10, "mx.good.example")]},
        "mx.good.example": {"A": ["127.0.0.1"]},
        "tarpit.example": {"MX": [(10 * n, f"mx{n}.tarpit.example") for n in range(1, 9)]},
    }
    for n, host in enumerate(TARPITS, start=1):
        zone[f"mx{n}.tarpit.example"] = {"A": [host]}
    return zone


def _sink(port: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = "/usr/sbin/smtp-sink"
    if os.access(binary, os.X_OK):
        as_root = ["-u", "nobody"] if os.geteuid() == 0 else []
        argv, name = [binary, *as_root, f"127.0.0.1:{port}", "512"], "smtp-sink"
    else:
        argv = [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
                "-l", f"127.0.0.1:{port}"]
        name = "aiosmtpd Sink"
    with open(workdir / "sink.log", "wb") as log:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
    wait_ready(port, process)
    return process, name


def _message(n: int, size: int = 10 * 1024) -> bytes:
    msg = EmailMessage()
    msg["From"] = "sender@example.net"
    msg["To"] = f"u{n}@good.example"
    msg["Subject"] = f"bench {n}"
    msg["Message-ID"] = f"<bench-{n}@example.net>"
    msg.set_content(("x" * 76 + "\n") * (size // 77))
    return msg.as_bytes()


def _settings(workdir: Path, config: str, dns: DnsStub, port: int,
              step_seconds: float) -> Settings:
    for key, value in {
        "MAILPLANE_STATE_DIR": str(workdir),
        "MAILPLANE_DATABASE_URL": f"sqlite:///{workdir / 'mailplane.db'}",
        "MAILPLANE_CONFIG": str(REPO / "config" / "mailplane.toml"),
    }.items():
        os.environ[key] = value
    base = load_settings()
    outbound = base.outbound.model_copy(update={
        "dns_nameserver": f"{dns.host}:{dns.port}", "mx_port": port,
        "connect_timeout_seconds": step_seconds, "dns_timeout_seconds": step_seconds,
        **CONFIGS[config]})
    return base.model_copy(update={"outbound": outbound})


async def _drain(settings: Settings, jobs: int, hostile: int) -> tuple[float, float]:
    """Seconds until every good job has an outcome (hostile ones may still hang), and the
    CPU seconds this process spent meanwhile."""
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    clock = SystemClock()
    with factory() as session:
        for n in range(hostile):
            domain = "tarpit.example" if n % 2 == 0 else "silent.example"
            stage_job(session, spool_dir=settings.spool_dir, kind="forward",
                      mail_from="sender@example.net", recipients=[f"h{n}@{domain}"],
                      message=_message(100_000 + n), now=clock.now())
        session.commit()
        for n in range(jobs):
            stage_job(session, spool_dir=settings.spool_dir, kind="forward",
                      mail_from="sender@example.net", recipients=[f"u{n}@good.example"],
                      message=_message(n), now=clock.now())
        session.commit()
    good_done = (select(func.count()).select_from(OutboundJob)
                 .where(OutboundJob.status == "sent"))
    worker = OutboundWorker(settings, factory, clock, worker_id="bench", poll_seconds=0.05)
    started, cpu = time.perf_counter(), time.process_time()
    running = asyncio.create_task(worker.run())
    try:
        while True:
            with factory() as session:
                if (session.scalar(good_done) or 0) >= jobs:
                    break
            await asyncio.sleep(0.02)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await worker.stop()
        await running
        engine.dispose()


def run(jobs: int, hostile: int, workdir: Path, step_seconds: float = 1.0,
        reps: int = 3) -> dict[str, Any]:
    """Each of the four runs ``reps`` times, alternating; the median is reported."""
    logging.getLogger("mailplane.outbound").setLevel(logging.ERROR)  # dead-destination news
    port = free_port()
    sink, sink_name = _sink(port, workdir)
    pits = Tarpit(TARPITS, port)
    dns = DnsStub(_zone(), silent_names=("silent.example",)).start()
    rows: dict[str, dict[str, Any]] = {}
    saved = {k: os.environ.get(k) for k in
             ("MAILPLANE_STATE_DIR", "MAILPLANE_DATABASE_URL", "MAILPLANE_CONFIG")}
    samples: dict[str, list[tuple[float, float]]] = {}
    try:
        for rep in range(reps):
            for config in CONFIGS:
                for scenario, ahead in (("clean", 0), ("hostile", hostile)):
                    name = f"{config}-{scenario}"
                    where = workdir / f"{name}-{rep}"
                    where.mkdir(parents=True)
                    settings = _settings(where, config, dns, port, step_seconds)
                    samples.setdefault(name, []).append(
                        asyncio.run(_drain(settings, jobs, ahead)))
                    rows[name] = {"config": config, "scenario": scenario, "jobs": jobs,
                                  "hostile_ahead": ahead}
        for name, row in rows.items():
            seconds = statistics.median(s for s, _cpu in samples[name])
            cpu = statistics.median(c for _s, c in samples[name])
            row.update(seconds=seconds, msgs_per_s=jobs / seconds,
                       cpu_ms_per_msg=1000 * cpu / jobs,
                       runs_seconds=[round(s, 3) for s, _cpu in samples[name]])
        for config in CONFIGS:
            rows[f"{config}-hostile"]["ratio_vs_clean"] = (
                rows[f"{config}-hostile"]["msgs_per_s"] / rows[f"{config}-clean"]["msgs_per_s"])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        dns.close()
        pits.close()
        sink.terminate()
        sink.wait(15)
    return {"jobs": jobs, "hostile": hostile, "sink": sink_name, "reps": reps,
            "step_seconds": step_seconds, "rows": rows}


def format_result(r: dict[str, Any]) -> str:
    lines = [f"outbound queue ({r['jobs']} good forwards of 10 KB to an {r['sink']}; "
             f"hostile: {r['hostile']} older jobs to a never-greeting MX / a never-answering "
             f"DNS, {r['step_seconds']:g} s per stuck step; median of {r['reps']}):"]
    for name, row in r["rows"].items():
        ratio = (f"  ÷ clean {row['ratio_vs_clean']:.2f}" if "ratio_vs_clean" in row else "")
        lines.append(f"  {name:<18} {row['msgs_per_s']:>7.1f} good msgs/s "
                     f"({row['seconds']:.2f} s, worker CPU {row['cpu_ms_per_msg']:.2f} "
                     f"ms/msg){ratio}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--hostile", type=int, default=10)
    parser.add_argument("--step-seconds", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailplane-outbound-"))
    try:
        print(format_result(run(args.jobs, args.hostile, workdir, args.step_seconds,
                                args.reps)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
