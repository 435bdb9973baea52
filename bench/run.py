"""``make bench`` / ``make bench-quick``: mailplane against its own baselines, in one run.

Every figure that matters is a *ratio measured in the same run* (issue 6): the machine is
shared, so absolute msgs/s drift, but ``mailplane / baseline-durable`` measured with the
servers interleaved (alternating repetitions) does not.

Servers (each its own process, all running for the whole run, measured in turn):
``baseline-durable`` (bench/baseline_durable.py), ``mailplane`` (``mailplane serve --role
mx`` with every filter on for 10,000 configured addresses) and, when Debian's postfix is
installed, ``smtp-sink`` as the ceiling.  Then the control-plane and API benchmarks.

Usage: ``python -m bench.run [--quick] [--reps 3] [--client asyncio|smtp-source]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

from bench import client, servers
from bench.dataset import DatasetShape, address_of, populate
from mailplane.storage.db import make_engine
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import OutboundJob

RESULTS = Path(__file__).resolve().parent / "results"
KB = 1024


@dataclass
class Plan:
    sizes: tuple[int, ...]
    sessions: tuple[int, ...]
    reps: int
    hosted: int
    spread: int
    messages: dict[tuple[int, int], int]
    control_plane_addresses: int
    api_requests: int


def make_plan(quick: bool, reps: int | None) -> Plan:
    sizes = (1 * KB, 10 * KB, 100 * KB)
    if quick:
        return Plan(sizes, (1, 4), reps or 1, 300, 20,
                    {(s, n): 8 if n == 1 else 16 for s in sizes for n in (1, 4)},
                    control_plane_addresses=2_000, api_requests=30)
    messages = {}
    for size in sizes:
        scale = 2 if size >= 100 * KB else 1
        messages[(size, 1)] = 150 // scale
        messages[(size, 20)] = 600 // scale
    return Plan(sizes, (1, 20), reps or 3, 10_000, 100, messages,
                control_plane_addresses=100_000, api_requests=300)


@dataclass
class Sample:
    server: str
    size: int
    sessions: int
    rep: int
    sent: int
    failed: int
    elapsed: float
    cpu_seconds: float
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def measure(server: servers.RunningServer, plan: Plan, size: int, sessions: int, rep: int,
            recipients: list[str], client_kind: str) -> Sample:
    count = plan.messages[(size, sessions)]
    cpu_before = server.cpu_seconds()
    if client_kind == "smtp-source":
        result = client.run_smtp_source("127.0.0.1", server.port, sessions=sessions,
                                        messages=count, size=size, recipient=recipients[0])
    else:
        result = asyncio.run(client.run_asyncio_load(
            "127.0.0.1", server.port, sessions=sessions, messages=count, size=size,
            recipients=recipients))
    cpu = server.cpu_seconds() - cpu_before
    return Sample(server.name, size, sessions, rep, result.sent, result.failed,
                  result.elapsed, cpu, result.latencies, result.first_error)


def summarise(samples: list[Sample]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    keys = sorted({(s.size, s.sessions, s.server) for s in samples})
    for size, sessions, name in keys:
        group = [s for s in samples if (s.size, s.sessions, s.server) == (size, sessions, name)]
        rates = [s.sent / s.elapsed for s in group if s.elapsed > 0]
        latencies = [v for s in group for v in s.latencies]
        sent = sum(s.sent for s in group)
        rate = statistics.median(rates) if rates else 0.0
        rows.append({
            "server": name, "size": size, "sessions": sessions,
            "msgs_per_s": rate, "mb_per_s": rate * size / 1e6,
            "p50_ms": _percentile(latencies, 50) * 1e3,
            "p99_ms": _percentile(latencies, 99) * 1e3,
            "cpu_ms_per_msg": (sum(s.cpu_seconds for s in group) / sent * 1e3) if sent else 0,
            "sent": sent, "failed": sum(s.failed for s in group),
            "first_error": next((s.first_error for s in group if s.first_error), ""),
        })
    by_key = {(r["size"], r["sessions"], r["server"]): r for r in rows}
    for row in rows:
        if row["server"] != "mailplane":
            continue
        for other, label in (("baseline-durable", "vs_baseline"), ("smtp-sink", "vs_sink")):
            ref = by_key.get((row["size"], row["sessions"], other))
            if ref and ref["msgs_per_s"]:
                row[label] = row["msgs_per_s"] / ref["msgs_per_s"]
        ref = by_key.get((row["size"], row["sessions"], "baseline-durable"))
        if ref and ref["p99_ms"] == ref["p99_ms"] and ref["p99_ms"] > 0:
            row["p99_vs_baseline"] = row["p99_ms"] / ref["p99_ms"]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'size':>6} {'sess':>4} {'server':<17} {'msgs/s':>8} {'MB/s':>6} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'cpu ms/msg':>10} {'fail':>4}  {'÷baseline':>9} {'÷sink':>6} "
            f"{'p99÷base':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        def ratio(key: str, row: dict[str, Any] = r) -> str:
            return f"{row[key]:.2f}" if key in row else ""
        lines.append(
            f"{r['size'] // KB:>4}KB {r['sessions']:>4} {r['server']:<17} "
            f"{r['msgs_per_s']:>8.0f} {r['mb_per_s']:>6.2f} {r['p50_ms']:>7.1f} "
            f"{r['p99_ms']:>7.1f} {r['cpu_ms_per_msg']:>10.2f} {r['failed']:>4}  "
            f"{ratio('vs_baseline'):>9} {ratio('vs_sink'):>6} {ratio('p99_vs_baseline'):>8}")
    return "\n".join(lines)


PG_ADMIN_URL = os.environ.get("MAILPLANE_BENCH_PG",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh SQLite file, or a throwaway PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        workdir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{workdir / 'mailplane.db'}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"mailplane_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare_mailplane(url: str, hosted: int, *, outbound: bool = True) -> float:
    """Migrate a fresh database and load ``hosted`` fully configured addresses."""
    started = time.perf_counter()
    upgrade(url)
    engine = make_engine(url)
    try:
        populate(engine, DatasetShape(addresses=hosted, forwarding=outbound,
                                      auto_reply=outbound))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def outbound_jobs(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {kind: n for kind, n in conn.execute(
                select(OutboundJob.kind, func.count()).group_by(OutboundJob.kind))}
    finally:
        engine.dispose()


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release(), "loadavg_before": os.getloadavg()}


def _stop_all(running: list[servers.RunningServer]) -> None:
    for server in running:
        server.stop()


def run_smtp(plan: Plan, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    notes: list[str] = []
    workers = args.workers or (os.cpu_count() or 1)
    running: list[servers.RunningServer] = []
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(database(args.db, workdir / "mailplane"))
        setup = prepare_mailplane(url, plan.hosted)
        notes.append(f"mailplane DB ({args.db}): {plan.hosted} addresses with every "
                     f"setting, loaded in {setup:.1f}s")
        stack.callback(_stop_all, running)
        running.append(servers.start_baseline(workdir))
        if args.fast_baseline_too:
            running.append(servers.start_baseline(workdir, fast=True))
        running.append(servers.start_mailplane(workdir, workers=workers, database_url=url))
        if args.single_worker_too and workers > 1:
            url_1w = stack.enter_context(database(args.db, workdir / "mailplane-1w"))
            prepare_mailplane(url_1w, plan.hosted)
            running.append(servers.start_mailplane(workdir, workers=1, database_url=url_1w,
                                                   name="mailplane-1w"))
        if args.no_outbound_too:
            url_nf = stack.enter_context(database(args.db, workdir / "mailplane-noout"))
            prepare_mailplane(url_nf, plan.hosted, outbound=False)
            running.append(servers.start_mailplane(workdir, workers=workers,
                                                   database_url=url_nf,
                                                   name="mailplane-noout"))
        sink = servers.start_smtp_sink(workdir)
        if isinstance(sink, str):
            notes.append(sink)
        else:
            running.append(sink)
        client_kind = args.client
        if client_kind == "smtp-source" and client.SMTP_SOURCE is None:
            notes.append("smtp-source not installed; using the bundled asyncio client")
            client_kind = "asyncio"
        recipients = [address_of(n) for n in range(plan.spread)]
        for server in running:  # warm-up: imports, page cache, policy snapshot
            measure(server, plan, plan.sizes[0], plan.sessions[0], -1, recipients, "asyncio")
        samples: list[Sample] = []
        for rep in range(plan.reps):
            for size in plan.sizes:
                for sessions in plan.sessions:
                    order = running[rep % len(running):] + running[:rep % len(running)]
                    for server in order:
                        samples.append(measure(server, plan, size, sessions, rep,
                                               recipients, client_kind))
        for server in running:
            server.stop()
        jobs = outbound_jobs(url)
    if not jobs:
        notes.append("forwarding (keep copy) and auto-reply are set in the DB for every "
                     "address, but the MX staged no outbound job: not wired into the MX yet")
    else:
        notes.append(f"outbound jobs staged by the MX: {jobs}")
    rows = summarise(samples)
    return {"client": client_kind, "workers": workers, "db": args.db, "notes": notes, "rows": rows,
            "samples": [asdict(s) | {"latencies": None} for s in samples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke check)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--client", choices=("asyncio", "smtp-source"), default="asyncio")
    parser.add_argument("--workers", type=int, default=0, help="mailplane MX workers "
                        "(default: one per CPU)")
    parser.add_argument("--single-worker-too", action="store_true",
                        help="also measure mailplane with one worker")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="mailplane's database (PostgreSQL: MAILPLANE_BENCH_PG admin URL)")
    parser.add_argument("--no-outbound-too", action="store_true",
                        help="also measure mailplane with forwarding/auto-reply OFF")
    parser.add_argument("--fast-baseline-too", action="store_true",
                        help="also measure the baseline handler on mailplane's FastSMTP")
    parser.add_argument("--skip-smtp", action="store_true")
    parser.add_argument("--skip-control-plane", action="store_true")
    parser.add_argument("--control-plane-addresses", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--only", default="", help="e.g. 10x20 = only 10 KB, 20 sessions")
    args = parser.parse_args()
    plan = make_plan(args.quick, args.reps)
    if args.only:
        kb, _, sessions = args.only.partition("x")
        plan.sizes, plan.sessions = (int(kb) * KB,), (int(sessions),)
        plan.messages.setdefault((int(kb) * KB, int(sessions)), 600)
    if args.control_plane_addresses:
        plan.control_plane_addresses = args.control_plane_addresses
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "quick": args.quick, "machine": machine()}
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="mailplane-bench-"))
    try:
        if not args.skip_smtp:
            report["smtp"] = run_smtp(plan, args, workdir)
            print(format_table(report["smtp"]["rows"]))
            for note in report["smtp"]["notes"]:
                print(f"note: {note}")
        if not args.skip_control_plane:
            from bench import api_bench, control_plane

            report["control_plane"] = control_plane.run(plan.control_plane_addresses,
                                                        workdir / "control")
            print(control_plane.format_result(report["control_plane"]))
            report["api"] = api_bench.run(plan.api_requests, workdir / "api")
            print(api_bench.format_result(report["api"]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["seconds"] = time.perf_counter() - started
    report["machine"]["loadavg_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / (
        f"bench-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}.json")
    output.write_text(json.dumps(report, indent=1, default=str))
    print(f"total {report['seconds']:.0f}s; results in {output}")


if __name__ == "__main__":
    main()
