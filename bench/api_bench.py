"""API benchmark (issue 6): ``GET /v1/contracts/{cn}/addresses`` (5-address contract) and
``PUT …/addresses/{address}/forwarding`` against a bare FastAPI endpoint, same process.

Requests go through ``httpx.AsyncClient`` over ``ASGITransport`` (no sockets), one at a
time, so the figure is the per-request cost of the app — routing, the key check (one
query and a keyed digest per request, no cache: :mod:`mailplane.auth.api_keys`; the
bench's key is stored the pre-0005 way, argon2, and moves to the digest at its first use),
the database work and the response model — and the same client cost is paid by the bare
endpoint.  The bare
endpoints are a sync ``def`` (threadpool, like mailplane's routes) and an ``async def``.

Run alone: ``python -m bench.api_bench --requests 500``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine

from bench.dataset import DatasetShape, address_of, contract_number, populate
from mailplane.api.app import create_app
from mailplane.auth.api_keys import new_key_material
from mailplane.auth.passwords import PasswordHashing
from mailplane.config.settings import Settings, load_settings
from mailplane.storage import api_keys_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import AuditRecord


def bare_app(engine: Engine | None = None) -> FastAPI:
    """Bare endpoints: nothing but FastAPI, and (``/bare-commit``) one durable row commit
    on mailplane's own engine — the least any durable write endpoint must do."""
    app = FastAPI()

    if engine is not None:
        factory = make_session_factory(engine)

        @app.put("/bare-commit")
        def bare_commit() -> dict[str, str]:
            with factory() as session:
                session.add(AuditRecord(at=datetime.now(UTC), actor="bench",
                                        action="bench.bare", detail={}))
                session.commit()
            return {"status": "ok"}

    @app.get("/bare-sync")
    def bare_sync() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare-async")
    async def bare_async() -> dict[str, str]:
        return {"status": "ok"}

    return app


#: Each endpoint is measured in this many alternating rounds, so a busy neighbour slows
#: all of them alike (as the SMTP table alternates its servers): the ratios are what count.
ROUNDS = 5


async def _timed(requests: int,
                 calls: dict[str, Callable[[int], Awaitable[httpx.Response]]]
                 ) -> dict[str, dict[str, float]]:
    """``requests`` sequential requests per endpoint, in :data:`ROUNDS` alternating rounds
    after a warm-up; requests/s and p50/p99 per endpoint."""
    for call in calls.values():
        for i in range(min(10, requests)):  # warm-up: key verification, imports, caches
            (await call(i)).raise_for_status()
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    elapsed: dict[str, float] = dict.fromkeys(calls, 0.0)
    per_round = max(1, requests // ROUNDS)
    for round_ in range(ROUNDS):
        for name, call in calls.items():
            started = time.perf_counter()
            for i in range(round_ * per_round, (round_ + 1) * per_round):
                t0 = time.perf_counter()
                response = await call(i)
                latencies[name].append(time.perf_counter() - t0)
                response.raise_for_status()
            elapsed[name] += time.perf_counter() - started
    results = {}
    for name, values in latencies.items():
        values.sort()
        results[name] = {
            "rps": len(values) / elapsed[name],
            "p50_ms": statistics.median(values) * 1e3,
            "p99_ms": values[min(len(values) - 1, int(len(values) * 0.99))] * 1e3,
        }
    return results


def _prepare(workdir: Path) -> tuple[Settings, Engine, str]:
    """A migrated SQLite DB with 1,000 configured addresses and an operator key."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        state_dir=str(workdir / "var"), database_url=f"sqlite:///{workdir / 'api.db'}",
        base_domains=["example.net"],
    )
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    populate(engine, DatasetShape(addresses=1000, deny_entries=2, allow_entries=1))
    factory = make_session_factory(engine)
    key_id, secret, key = new_key_material()
    with factory() as session:
        api_keys_repo.create_api_key(
            session, key_id=key_id, secret_hash=PasswordHashing(settings.security).hash(secret),
            role="operator", now=datetime.now(UTC), label="bench")
        session.commit()
    return settings, engine, key


async def _measure(requests: int, settings: Settings, engine: Engine, key: str
                   ) -> dict[str, Any]:
    factory = make_session_factory(engine)
    headers = {"Authorization": f"Bearer {key}"}
    cn, address = contract_number(7), address_of(35)  # contract 7 holds addresses 35-39
    results: dict[str, Any] = {}
    try:
        app = create_app(settings, session_factory=factory)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bare_app(engine)),
                                     base_url="http://bench") as bare, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://bench", headers=headers) as api:
            results.update(await _timed(requests, {
                "bare_sync": lambda i: bare.get("/bare-sync"),
                "bare_async": lambda i: bare.get("/bare-async"),
                "bare_commit": lambda i: bare.put("/bare-commit"),
                "get_addresses": lambda i: api.get(f"/v1/contracts/{cn}/addresses"),
                "put_forwarding": lambda i: api.put(
                    f"/v1/contracts/{cn}/addresses/{address}/forwarding",
                    json={"destinations": [f"fwd{i % 7}@elsewhere.example"],
                          "keep_copy": True}),
            }))
    finally:
        engine.dispose()
    for name in ("get_addresses", "put_forwarding"):
        results[name]["ratio_vs_bare_sync"] = results[name]["rps"] / results["bare_sync"]["rps"]
        results[name]["ratio_vs_bare_async"] = (
            results[name]["rps"] / results["bare_async"]["rps"])
    results["put_forwarding"]["ratio_vs_bare_commit"] = (
        results["put_forwarding"]["rps"] / results["bare_commit"]["rps"])
    results["requests"] = requests
    return results


def run(requests: int, workdir: Path) -> dict[str, Any]:
    settings, engine, key = _prepare(workdir)
    return asyncio.run(_measure(requests, settings, engine, key))


def format_result(r: dict[str, Any]) -> str:
    lines = [f"API ({r['requests']} sequential requests each in {ROUNDS} alternating rounds, "
             "in-process ASGI):"]
    for name in ("bare_sync", "bare_async", "bare_commit", "get_addresses", "put_forwarding"):
        row = r[name]
        ratio = (f"  ratio vs bare sync {row['ratio_vs_bare_sync']:.2f}, "
                 f"vs bare async {row['ratio_vs_bare_async']:.2f}"
                 if "ratio_vs_bare_sync" in row else "")
        if "ratio_vs_bare_commit" in row:
            ratio += f", vs bare commit {row['ratio_vs_bare_commit']:.2f}"
        lines.append(f"  {name:<15} {row['rps']:>7.0f} req/s  p50 {row['p50_ms']:.2f} ms  "
                     f"p99 {row['p99_ms']:.2f} ms{ratio}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailplane-api-"))
    try:
        print(format_result(run(args.requests, workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
