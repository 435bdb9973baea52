"""Control-plane scale (issue 6): N addresses with settings → policy cache build time,
memory per address and RCPT lookup time, and what one settings change then costs a node:
:func:`mailplane.storage.policy_loader.refresh_snapshot` patching the snapshot from the change log.

Each address carries a 2-entry deny list, a 1-entry allow list, one forwarding destination
and an enabled auto-reply (so every per-address structure of :class:`AddressPolicy` is
populated).  Memory per address is what ``tracemalloc`` sees retained by the snapshot
after :func:`mailplane.storage.policy_loader.load_snapshot` returns, divided by N.

Run alone: ``python -m bench.control_plane --addresses 1000000``.
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sqlalchemy import update

from bench.dataset import DatasetShape, address_of, populate
from mailplane.storage import policy_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from mailplane.storage.models import Address
from mailplane.storage.policy_loader import load_snapshot, refresh_snapshot

BASE_DOMAINS = ("example.net",)


def run(addresses: int, workdir: Path, *, lookups: int = 1_000_000) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'control.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        populate(engine, DatasetShape(addresses=addresses, deny_entries=2, allow_entries=1))
        insert_s = time.perf_counter() - started
        factory = make_session_factory(engine)
        gc.collect()
        started = time.perf_counter()
        with factory() as session:
            snapshot = load_snapshot(session, BASE_DOMAINS)
        build_s = time.perf_counter() - started
        assert len(snapshot.by_address) == addresses
        del snapshot
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        with factory() as session:
            snapshot = load_snapshot(session, BASE_DOMAINS)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        changed = address_of(addresses // 2)
        with factory() as session:  # one customer changes one setting through the API
            session.execute(update(Address).where(Address.address == changed)
                            .values(spam_judge=True))
            policy_repo.bump_revision(session, address=changed)
            session.commit()
        started = time.perf_counter()
        with factory() as session:
            patched = refresh_snapshot(session, snapshot)
        refresh_s = time.perf_counter() - started
        assert patched.lookup(changed).spam_judge  # type: ignore[union-attr]
        snapshot = patched
    finally:
        engine.dispose()
    rng = random.Random(6)
    probes = [address_of(rng.randrange(addresses)) for _ in range(1000)]
    lookup = snapshot.lookup
    started = time.perf_counter()
    rounds = max(1, lookups // len(probes))
    for _ in range(rounds):
        for probe in probes:
            lookup(probe)
    lookup_ns = (time.perf_counter() - started) / (rounds * len(probes)) * 1e9
    missing = "nobody@a01.example.net"
    started = time.perf_counter()
    for _ in range(rounds * 100):
        lookup(missing)
    miss_ns = (time.perf_counter() - started) / (rounds * 100) * 1e9
    return {"addresses": addresses, "insert_s": insert_s, "snapshot_build_s": build_s,
            "bytes_per_address": retained / addresses, "lookup_hit_ns": lookup_ns,
            "lookup_miss_ns": miss_ns, "refresh_one_change_s": refresh_s}


def format_result(r: dict[str, Any]) -> str:
    return (f"control plane: {r['addresses']:,} addresses with settings — bulk insert "
            f"{r['insert_s']:.1f}s, policy snapshot build {r['snapshot_build_s']:.2f}s, "
            f"{r['bytes_per_address']:.0f} B/address, RCPT lookup "
            f"{r['lookup_hit_ns']:.0f} ns (hit) / {r['lookup_miss_ns']:.0f} ns (miss), "
            f"refresh after one settings change {r['refresh_one_change_s'] * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addresses", type=int, default=1_000_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailplane-control-"))
    try:
        print(format_result(run(args.addresses, workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
