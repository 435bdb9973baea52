"""``make bench`` / ``make bench-quick``: mailplane against its own baselines, in one run.

Every figure that matters is a *ratio measured in the same run* (issue 6): the machine is
shared, so absolute msgs/s drift, but ``mailplane / baseline-durable`` measured with the
servers interleaved (alternating repetitions) does not.

Servers (each its own process, all running for the whole run, measured in turn):
``baseline-durable`` (bench/baseline_durable.py), ``mailplane`` (``mailplane serve --role
mx`` with ``make run``'s default configuration — ``mx.workers`` one per CPU — and every
filter on for 10,000 configured addresses), ``mailplane-<N>w`` (the same with another
``mx.workers``; the full run adds ``mailplane-1w``, so column ``÷1w`` shows what the
default's extra MX processes buy) and, when Debian's
postfix is installed and the bench is root, ``postfix`` (a private Postfix instance with no
filters delivering into Maildirs, bench/postfix.py; measured to the last 250 and, as
``postfix-maildir``, to the last file in the Maildirs) and ``smtp-sink`` as the ceiling.
Then the targets of issue 13 (mailplane ÷ Postfix), the control-plane and API benchmarks
and DKIM signing's cost (bench/signing.py).

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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text

from bench import client, servers
from bench.dataset import DatasetShape, address_of, populate
from bench.sender_domain import SendingDomain, ZoneServer
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
    client_cpu_seconds: float = 0.0
    #: CPU seconds the whole machine was busy meanwhile (server, client and others).
    busy_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


Server = servers.RunningServer | servers.PostfixServer


def measure(server: Server, plan: Plan, size: int, sessions: int, rep: int,
            recipients: list[str], client_kind: str,
            sign: Callable[[bytes], bytes] | None = None) -> list[Sample]:
    """One load against one server.  Postfix gives two samples: ``postfix`` to the last
    250 (like every other server) and ``postfix-maildir`` to the last file in its Maildirs
    (its queue is empty then, so its deliveries do not spill into the next measurement)."""
    count = plan.messages[(size, sessions)]
    if isinstance(server, servers.PostfixServer):
        server.instance.clear_maildirs()
    cpu_before = server.cpu_seconds()
    busy_before = servers.machine_busy_seconds()
    if client_kind == "smtp-source":
        result = client.run_smtp_source("127.0.0.1", server.port, sessions=sessions,
                                        messages=count, size=size, recipient=recipients[0])
    else:
        result = asyncio.run(client.run_asyncio_load(
            "127.0.0.1", server.port, sessions=sessions, messages=count, size=size,
            recipients=recipients, sign=sign))
    cpu = server.cpu_seconds() - cpu_before
    busy = servers.machine_busy_seconds() - busy_before
    samples = [Sample(server.name, size, sessions, rep, result.sent, result.failed,
                      result.elapsed, cpu, result.client_cpu, busy, result.latencies,
                      result.first_error)]
    if isinstance(server, servers.PostfixServer):
        error = ""
        try:
            done = server.instance.wait_delivered(result.sent)
        except TimeoutError as exc:
            done, error = time.perf_counter(), f"TimeoutError: {exc}"
        elapsed = max(done - result.started, result.elapsed)
        samples.append(Sample(f"{server.name}-maildir", size, sessions, rep, result.sent,
                              result.failed + (result.sent if error else 0), elapsed,
                              server.cpu_seconds() - cpu_before, result.client_cpu,
                              servers.machine_busy_seconds() - busy_before, [],
                              result.first_error or error))
    elif isinstance(server, servers.RunningServer) and server.queued_jobs is not None:
        # A node with its outbound worker: wait until it has sent every forward and
        # auto-reply, so its backlog does not run during the next server's turn.
        deadline, queued = time.perf_counter() + 120, -1
        while time.perf_counter() < deadline:
            queued = server.queued_jobs()
            if queued == 0:
                break
            time.sleep(0.02)
        samples.append(Sample(f"{server.name}-drained", size, sessions, rep, result.sent,
                              result.failed + (result.sent if queued else 0),
                              time.perf_counter() - result.started,
                              server.cpu_seconds() - cpu_before, result.client_cpu,
                              servers.machine_busy_seconds() - busy_before, [],
                              result.first_error
                              or (f"{queued} outbound jobs still queued" if queued else "")))
    return samples


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
            "msgs_per_s": rate, "mb_per_s": rate * size / 1e6, "rates": rates,
            "p50_ms": _percentile(latencies, 50) * 1e3,
            "p99_ms": _percentile(latencies, 99) * 1e3,
            "cpu_ms_per_msg": (sum(s.cpu_seconds for s in group) / sent * 1e3) if sent else 0,
            "client_cpu_ms_per_msg": (sum(s.client_cpu_seconds for s in group) / sent * 1e3)
            if sent else 0,
            # Cores that other programs (not this server, not the client) kept busy.
            "others_cores": min(float(os.cpu_count() or 1), max(0.0, sum(
                s.busy_seconds - s.cpu_seconds - s.client_cpu_seconds for s in group))
                / max(sum(s.elapsed for s in group), 1e-9)),
            "sent": sent, "failed": sum(s.failed for s in group),
            "first_error": next((s.first_error for s in group if s.first_error), ""),
        })
    by_key = {(r["size"], r["sessions"], r["server"]): r for r in rows}
    for row in rows:
        if not row["server"].startswith("mailplane"):
            continue
        drained = row["server"].endswith("-drained")
        # A drained row (every forward and auto-reply sent) compares with Postfix's
        # to-the-Maildir row: all work done on both sides.
        for other, label in (("baseline-durable", "vs_baseline"), ("smtp-sink", "vs_sink"),
                             ("postfix-maildir" if drained else "postfix", "vs_postfix"),
                             ("postfix-maildir", "vs_postfix_maildir")):
            ref = by_key.get((row["size"], row["sessions"], other))
            if ref and ref["msgs_per_s"]:
                row[label] = row["msgs_per_s"] / ref["msgs_per_s"]
        one_worker = by_key.get((row["size"], row["sessions"], "mailplane-1w"))
        if row["server"] == "mailplane" and one_worker and one_worker["msgs_per_s"]:
            # What the default (one MX process per CPU) buys over one process.
            row["vs_1w"] = row["msgs_per_s"] / one_worker["msgs_per_s"]
        if row["server"] == AUTH_SERVER:
            off = by_key.get((row["size"], row["sessions"], "mailplane"))
            if off and off["msgs_per_s"]:
                row["vs_auth_off"] = row["msgs_per_s"] / off["msgs_per_s"]
                row["cpu_vs_auth_off"] = (row["cpu_ms_per_msg"] / off["cpu_ms_per_msg"]
                                          if off["cpu_ms_per_msg"] else float("nan"))
        for other, pct, label in (("baseline-durable", "p99_ms", "p99_vs_baseline"),
                                  ("postfix", "p50_ms", "p50_vs_postfix")):
            ref = by_key.get((row["size"], row["sessions"], other))
            if ref and ref[pct] == ref[pct] and ref[pct] > 0 and row[pct] == row[pct]:
                row[label] = row[pct] / ref[pct]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'size':>6} {'sess':>4} {'server':<21} {'msgs/s':>8} {'MB/s':>6} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'cpu ms/msg':>10} {'fail':>4}  {'÷baseline':>9} {'÷sink':>6} "
            f"{'÷postfix':>8} {'÷1w':>5} {'p99÷base':>8} {'p50÷pfx':>7} {'others':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        def ratio(key: str, row: dict[str, Any] = r) -> str:
            return f"{row[key]:.2f}" if key in row else ""

        def ms(key: str, row: dict[str, Any] = r) -> str:
            return f"{row[key]:.1f}" if row[key] == row[key] else "-"
        lines.append(
            f"{r['size'] // KB:>4}KB {r['sessions']:>4} {r['server']:<21} "
            f"{r['msgs_per_s']:>8.0f} {r['mb_per_s']:>6.2f} {ms('p50_ms'):>7} "
            f"{ms('p99_ms'):>7} {r['cpu_ms_per_msg']:>10.2f} {r['failed']:>4}  "
            f"{ratio('vs_baseline'):>9} {ratio('vs_sink'):>6} {ratio('vs_postfix'):>8} "
            f"{ratio('vs_1w'):>5} {ratio('p99_vs_baseline'):>8} {ratio('p50_vs_postfix'):>7} "
            f"{r['others_cores']:>6.2f}")
    return "\n".join(lines)


#: Issue 13's targets: mailplane (default configuration, every filter on) against Postfix
#: (no filters, virtual(8) into a Maildir), as ratios measured in the same run.
THROUGHPUT_TARGET = 1.25
#: Cores kept busy by other programs during a row above which a target is flagged.
BUSY_WARNING = 0.25


def evaluate_targets(rows: list[dict[str, Any]], plan: Plan,
                     server: str = "mailplane") -> list[dict[str, Any]]:
    """Each target with its measured value, PASS/MISS and, for a MISS, the measured
    reason: whether the two processes that share the CPUs (mailplane and the client)
    could reach the target rate at all with the CPU each of them spends per message."""
    by_key = {(r["size"], r["sessions"], r["server"]): r for r in rows}
    many = max(plan.sessions)
    ncpu = os.cpu_count() or 1
    out: list[dict[str, Any]] = []
    for size in (10 * KB, 100 * KB) if many > 1 else ():
        mp, pf = by_key.get((size, many, server)), by_key.get((size, many, "postfix"))
        name = f"{server} ÷ postfix msgs/s to the 250, {size // KB} KB / {many} sessions"
        if not mp or not pf or not pf["msgs_per_s"]:
            out.append({"target": name, "status": "n/a", "why": "not measured in this run"})
            continue
        ratio = mp["msgs_per_s"] / pf["msgs_per_s"]
        entry = {"target": name, "goal": f">= {THROUGHPUT_TARGET}", "value": round(ratio, 3),
                 "status": "PASS" if ratio >= THROUGHPUT_TARGET else "MISS"}
        _caution(entry, mp, pf)
        if entry["status"] == "MISS":
            goal = THROUGHPUT_TARGET * pf["msgs_per_s"]
            need = mp["cpu_ms_per_msg"] + mp["client_cpu_ms_per_msg"]
            cores = goal * need / 1e3
            free = max(0.1, ncpu - mp["others_cores"])
            budget = free * 1e3 / goal - mp["client_cpu_ms_per_msg"]
            if cores > free:
                entry["why"] = (
                    f"CPU-bound: {goal:.0f} msgs/s at {mp['cpu_ms_per_msg']:.2f} ms/msg "
                    f"(mailplane) + {mp['client_cpu_ms_per_msg']:.2f} ms/msg (client) needs "
                    f"{cores:.2f} cores of the {free:.2f} that other programs left free "
                    f"({ncpu} in all); mailplane must spend <= {budget:.2f} ms/msg "
                    f"(postfix spends {pf['cpu_ms_per_msg']:.2f})")
            else:
                entry["why"] = (
                    f"not CPU-bound ({cores:.2f} of the {free:.2f} cores other programs "
                    f"left free at {goal:.0f} msgs/s): waiting (durability/serialisation); "
                    f"mailplane p50 {mp['p50_ms']:.1f} ms vs postfix {pf['p50_ms']:.1f} ms")
        out.append(entry)
    for size in plan.sizes:
        mp, pf = by_key.get((size, 1, server)), by_key.get((size, 1, "postfix"))
        name = f"{server} p50 DATA-to-250 <= postfix's, {size // KB} KB / 1 session"
        if not mp or not pf:
            out.append({"target": name, "status": "n/a", "why": "not measured in this run"})
            continue
        entry = {"target": name, "goal": "<= 1.0",
                 "value": round(mp["p50_ms"] / pf["p50_ms"], 3) if pf["p50_ms"] else None,
                 "status": "PASS" if mp["p50_ms"] <= pf["p50_ms"] else "MISS"}
        _caution(entry, mp, pf)
        if entry["status"] == "MISS":
            entry["why"] = (f"{mp['p50_ms']:.2f} ms vs {pf['p50_ms']:.2f} ms "
                            f"(mailplane {mp['cpu_ms_per_msg']:.2f} CPU ms/msg, postfix "
                            f"{pf['cpu_ms_per_msg']:.2f})")
        out.append(entry)
    return out


def _caution(entry: dict[str, Any], mp: dict[str, Any], pf: dict[str, Any]) -> None:
    busy = max(mp["others_cores"], pf["others_cores"])
    if busy > BUSY_WARNING:
        entry["caution"] = (f"other programs kept {busy:.2f} cores busy meanwhile; "
                            "mailplane (one process per worker) loses more to them than "
                            "Postfix (many processes): rerun on a quiet machine")


def format_targets(targets: list[dict[str, Any]], quick: bool = False) -> str:
    lines = [f"targets (issue 13; every filter on, ratios in this run, goal "
             f"mailplane ÷ postfix >= {THROUGHPUT_TARGET})"
             + (" -- --quick: tiny counts, indicative only:" if quick else ":")]
    for t in targets:
        value = f"{t['value']:.3f}" if t.get("value") is not None else ""
        lines.append(f"  {t['status']:<4} {t['target']}: {value} (goal {t.get('goal', '-')})")
        if t.get("why"):
            lines.append(f"       reason: {t['why']}")
        if t.get("caution"):
            lines.append(f"       caution: {t['caution']}")
    return "\n".join(lines)


#: Issue 21: mailplane with sender authentication on (records from the bench's loopback
#: DNS server) ÷ the same server with it off, msgs/s in the same run.
AUTH_SERVER = "mailplane-auth"
AUTH_TARGET = 0.90


def auth_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Authentication on ÷ off for every measured size and session count."""
    out = []
    for row in rows:
        if row["server"] != AUTH_SERVER or "vs_auth_off" not in row:
            continue
        ratio = row["vs_auth_off"]
        out.append({"target": f"{AUTH_SERVER} ÷ mailplane msgs/s, {row['size'] // KB} KB / "
                              f"{row['sessions']} sessions",
                    "goal": f">= {AUTH_TARGET}", "value": round(ratio, 3),
                    "cpu_ratio": round(row["cpu_vs_auth_off"], 3),
                    "status": "PASS" if ratio >= AUTH_TARGET else "MISS"})
    return out


def format_auth_targets(targets: list[dict[str, Any]]) -> str:
    lines = ["sender authentication (issue 21; SPF + DKIM RSA-2048 + DMARC p=reject checked "
             "against the bench's loopback DNS server, ratios in this run):"]
    for t in targets:
        lines.append(f"  {t['status']:<4} {t['target']}: {t['value']:.3f} (goal {t['goal']}; "
                     f"CPU per message {t['cpu_ratio']:.2f}x)")
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


def queued_jobs_counter(url: str) -> Callable[[], int]:
    """How many outbound jobs are still queued in the node's database."""
    engine = make_engine(url)
    query = select(func.count()).select_from(OutboundJob).where(OutboundJob.status == "queued")

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    return count


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
            "kernel": platform.release(), "loadavg_before": os.getloadavg(),
            "pressure_before": pressure()}


def pressure() -> dict[str, float]:
    """``/proc/pressure/{cpu,io}`` "some" avg60 (% of time something waited), if any."""
    out = {}
    for kind in ("cpu", "io"):
        try:
            line = Path(f"/proc/pressure/{kind}").read_text().splitlines()[0]
            out[kind] = float(line.split("avg60=")[1].split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return out


def format_machine(info: dict[str, Any]) -> str:
    def load(key: str) -> str:
        return "/".join(f"{v:.2f}" for v in info.get(key, ()))
    return (f"machine: {info['nproc']} CPUs ({info['cpu_model']}), load average before "
            f"{load('loadavg_before')}, after {load('loadavg_after')}; pressure avg60 "
            f"before {info.get('pressure_before')}, after {info.get('pressure_after')}; "
            "column 'others' = cores other programs kept busy during that row")


def _stop_all(running: list[Server]) -> None:
    for server in running:
        server.stop()


def default_workers() -> int:
    """``mx.workers`` when the configuration does not set it (what ``make run`` uses)."""
    from mailplane.config.sections import MxConfig

    return MxConfig().workers


def run_smtp(plan: Plan, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    notes: list[str] = []
    workers = args.workers or default_workers()
    extra_workers = sorted({n for n in args.workers_too if n != workers})
    if args.single_worker_too and workers > 1 and 1 not in extra_workers:
        extra_workers.insert(0, 1)
    running: list[Server] = []
    recipients = [address_of(n) for n in range(plan.spread)]
    # Every server gets the same DKIM-signed mail (as most mail is today); only
    # mailplane-auth checks it.
    sending = SendingDomain.create()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(database(args.db, workdir / "mailplane"))
        setup = prepare_mailplane(url, plan.hosted)
        notes.append(f"mailplane DB ({args.db}): {plan.hosted} addresses with every "
                     f"setting, loaded in {setup:.1f}s")
        stack.callback(_stop_all, running)
        running.append(servers.start_baseline(workdir))
        if args.fast_baseline_too:
            running.append(servers.start_baseline(workdir, fast=True))
        running.append(servers.start_mailplane(
            workdir, workers=args.workers or None, database_url=url))
        default = "" if args.workers else " (the configuration default, one per CPU, as make run)"
        notes.append(f"mailplane: mx.workers = {workers}{default}; connection limits "
                     "counted for the node (net/anvil.py)")
        zone: ZoneServer | None = None
        if args.auth_too:
            zone = ZoneServer(sending.zone)
            stack.callback(zone.close)
            url_auth = stack.enter_context(database(args.db, workdir / AUTH_SERVER))
            prepare_mailplane(url_auth, plan.hosted)
            running.append(servers.start_mailplane(
                workdir, workers=args.workers or None, database_url=url_auth,
                name=AUTH_SERVER, auth_nameserver=zone.address))
        for n in extra_workers:
            name = f"mailplane-{n}w"
            url_n = stack.enter_context(database(args.db, workdir / name))
            prepare_mailplane(url_n, plan.hosted)
            running.append(servers.start_mailplane(workdir, workers=n, database_url=url_n,
                                                   name=name))
        if args.asyncio_loop_too:
            url_a = stack.enter_context(database(args.db, workdir / "mailplane-asyncio"))
            prepare_mailplane(url_a, plan.hosted)
            running.append(servers.start_mailplane(workdir, workers=args.workers or None,
                                                   database_url=url_a, name="mailplane-asyncio",
                                                   event_loop="asyncio"))
        if args.no_outbound_too:
            url_nf = stack.enter_context(database(args.db, workdir / "mailplane-noout"))
            prepare_mailplane(url_nf, plan.hosted, outbound=False)
            running.append(servers.start_mailplane(workdir, workers=args.workers or None,
                                                   database_url=url_nf,
                                                   name="mailplane-noout"))
        sink = servers.start_smtp_sink(workdir)
        optional = [sink]
        if not args.no_postfix:
            optional.insert(0, servers.start_postfix(workdir, recipients))
        for server in optional:
            if isinstance(server, str):
                notes.append(server)
            else:
                running.append(server)
                if server.note:
                    notes.append(f"{server.name}: {server.note}")
        if args.all_roles_too:
            url_all = stack.enter_context(database(args.db, workdir / "mailplane-all"))
            prepare_mailplane(url_all, plan.hosted)
            node = servers.start_mailplane(
                workdir, workers=args.workers or None, database_url=url_all,
                name="mailplane-all", all_roles=True,
                smarthost_port=0 if isinstance(sink, str) else sink.port)
            if not isinstance(sink, str):
                node.queued_jobs = queued_jobs_counter(url_all)
            running.insert(1 + len(extra_workers) + 1, node)
            notes.append("mailplane-all: every role in one node as make run starts it; "
                         "the outbound worker delivers forwards and auto-replies to "
                         + ("a closed port (no smtp-sink)" if isinstance(sink, str)
                            else "smtp-sink"))
        client_kind = args.client
        if client_kind == "smtp-source" and client.SMTP_SOURCE is None:
            notes.append("smtp-source not installed; using the bundled asyncio client")
            client_kind = "asyncio"
        for server in running:  # warm-up: imports, page cache, policy snapshot
            measure(server, plan, plan.sizes[0], plan.sessions[0], -1, recipients, "asyncio",
                    sending.sign)
        samples: list[Sample] = []
        for rep in range(plan.reps):
            for size in plan.sizes:
                for sessions in plan.sessions:
                    order = running[rep % len(running):] + running[:rep % len(running)]
                    for server in order:
                        samples.extend(measure(server, plan, size, sessions, rep,
                                               recipients, client_kind, sending.sign))
        for server in running:
            server.stop()
        jobs = outbound_jobs(url)
        if zone is not None:
            notes.append(f"{AUTH_SERVER}: [authentication] on, resolving through the "
                         f"bench's DNS server ({zone.queries} queries answered; each MX "
                         "process caches answers for their TTL); every server gets the "
                         "same DKIM-signed messages")
            if client_kind == "smtp-source":
                notes.append("smtp-source sends its own unsigned messages: DKIM and DMARC "
                             f"of {AUTH_SERVER} are none/fail there")
    if not jobs:
        notes.append("forwarding (keep copy) and auto-reply are set in the DB for every "
                     "address, but the MX staged no outbound job: not wired into the MX yet")
    else:
        notes.append(f"outbound jobs staged by the MX: {jobs}")
    rows = summarise(samples)
    targets = evaluate_targets(rows, plan)
    for other in [*(f"mailplane-{n}w" for n in extra_workers),
                  *(["mailplane-all"] if args.all_roles_too else [])]:
        targets += evaluate_targets(rows, plan, server=other)
    return {"client": client_kind, "workers": workers, "extra_workers": extra_workers,
            "db": args.db, "notes": notes, "rows": rows, "targets": targets,
            "auth_targets": auth_targets(rows),
            "samples": [asdict(s) | {"latencies": None} for s in samples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke check)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--client", choices=("asyncio", "smtp-source"), default="asyncio")
    parser.add_argument("--workers", type=int, default=0, help="mailplane MX workers "
                        "(default: the configuration's default, as make run)")
    parser.add_argument("--workers-too", type=int, nargs="*", default=None, metavar="N",
                        help="also measure mailplane-<N>w with N workers (default without "
                        "--quick: 1 and one per CPU, whichever is not the default; the ÷1w "
                        "column compares the default with one worker)")
    parser.add_argument("--single-worker-too", action="store_true",
                        help="also measure mailplane with one worker")
    parser.add_argument("--all-roles-too", action=argparse.BooleanOptionalAction,
                        default=None, help="also measure mailplane-all: every role in one "
                        "node, as make run starts it (default: yes without --quick)")
    parser.add_argument("--no-postfix", action="store_true",
                        help="skip the private Postfix instance (the postfix column)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="mailplane's database (PostgreSQL: MAILPLANE_BENCH_PG admin URL)")
    parser.add_argument("--asyncio-loop-too", action="store_true",
                        help="also measure mailplane on asyncio's own event loop (the "
                             "default is uvloop where installed)")
    parser.add_argument("--no-outbound-too", action="store_true",
                        help="also measure mailplane with forwarding/auto-reply OFF")
    parser.add_argument("--auth-too", action=argparse.BooleanOptionalAction, default=True,
                        help=f"also measure {AUTH_SERVER}: sender authentication on, "
                             "records from a loopback DNS server (default: yes)")
    parser.add_argument("--fast-baseline-too", action="store_true",
                        help="also measure the baseline handler on mailplane's FastSMTP")
    parser.add_argument("--skip-smtp", action="store_true")
    parser.add_argument("--skip-control-plane", action="store_true")
    parser.add_argument("--skip-signing", action="store_true",
                        help="skip the DKIM signing figures (bench/signing.py)")
    parser.add_argument("--skip-outbound", action="store_true",
                        help="skip the outbound queue figure (good mail with and without "
                             "hostile destinations ahead, issue 20)")
    parser.add_argument("--control-plane-addresses", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--only", default="", help="e.g. 10x20 = only 10 KB, 20 sessions")
    args = parser.parse_args()
    plan = make_plan(args.quick, args.reps)
    if args.workers_too is None:
        args.workers_too = [] if args.quick else [1, os.cpu_count() or 1]
    if args.all_roles_too is None:
        args.all_roles_too = not args.quick
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
            print(format_targets(report["smtp"]["targets"], args.quick))
            if report["smtp"]["auth_targets"]:
                print(format_auth_targets(report["smtp"]["auth_targets"]))
        if not args.skip_control_plane:
            from bench import api_bench, control_plane

            report["control_plane"] = control_plane.run(plan.control_plane_addresses,
                                                        workdir / "control")
            print(control_plane.format_result(report["control_plane"]))
            report["api"] = api_bench.run(plan.api_requests, workdir / "api")
            print(api_bench.format_result(report["api"]))
        if not args.skip_signing:
            from bench import signing

            report["signing"] = signing.run(workdir / "signing",
                                            messages=20 if args.quick else 200,
                                            jobs=30 if args.quick else 300)
            print(signing.format_result(report["signing"]))
        if not args.skip_outbound:
            from bench import outbound_bench

            (workdir / "outbound").mkdir()
            report["outbound"] = outbound_bench.run(
                *((30, 2) if args.quick else (300, 10)), workdir / "outbound",
                reps=1 if args.quick else 3)
            print(outbound_bench.format_result(report["outbound"]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["seconds"] = time.perf_counter() - started
    report["machine"]["loadavg_after"] = os.getloadavg()
    report["machine"]["pressure_after"] = pressure()
    print(format_machine(report["machine"]))
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / (
        f"bench-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}.json")
    output.write_text(json.dumps(report, indent=1, default=str))
    print(f"total {report['seconds']:.0f}s; results in {output}")


if __name__ == "__main__":
    main()
