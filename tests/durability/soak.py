"""``make soak``: the long crash run (issue 7).  Bounded in count and time, loopback only.

    python -m tests.durability.soak [--messages N] [--clients N] [--crashes N]
                                     [--worker-messages N] [--worker-crashes N]

Prints one table per scenario and exits 1 if any accepted message was lost, duplicated
without cause, or stored in the wrong place.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.durability.harness import Report, run_mx_crash, run_worker_crash


def _ok(report: Report) -> bool:
    return not (report.lost or report.unexplained_duplicates or report.misplaced)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--crashes", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--worker-messages", type=int, default=40)
    parser.add_argument("--worker-crashes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="mailplane-soak-") as tmp:
        started = time.monotonic()
        mx = run_mx_crash(Path(tmp) / "mx", messages=args.messages, clients=args.clients,
                          crashes=args.crashes, seconds=args.seconds, seed=args.seed)
        print(f"== MX + worker killed while {args.clients} clients send "
              f"({time.monotonic() - started:.0f} s)")
        print(mx.table())
        ok &= _ok(mx)
        started = time.monotonic()
        worker = run_worker_crash(Path(tmp) / "worker", messages=args.worker_messages,
                                  crashes=args.worker_crashes, seed=args.seed)
        print(f"\n== outbound worker killed mid-delivery ({time.monotonic() - started:.0f} s)")
        print(worker.table())
        ok &= _ok(worker)
        for report in (mx, worker):
            for line in report.lost + report.unexplained_duplicates + report.misplaced:
                print("PROBLEM", line)
    print("\nsoak:", "OK — lost 0" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
