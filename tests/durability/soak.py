"""``make soak``: the long crash run (issue 7) and the mixed-abuse run (issue 15).
Bounded in count and time, loopback only.

    python -m tests.durability.soak [--messages N] [--clients N] [--crashes N]
                                     [--worker-messages N] [--worker-crashes N]
                                     [--abuse-seconds S] [--abuse-messages N]

Prints one table per scenario and exits 1 if any accepted message was lost, duplicated
without cause, or stored in the wrong place — or, in the abuse run, if a good client's
request got a 5xx or no answer, a forged SRS address was accepted or relayed, or mail
sprayed into the forwarding graph was multiplied or sent out past the hourly limit
(:mod:`tests.abuse.soak_abuse`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.abuse.soak_abuse import run_mixed_abuse
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
    parser.add_argument("--abuse-seconds", type=float, default=90.0)
    parser.add_argument("--abuse-messages", type=int, default=300)
    parser.add_argument("--only-abuse", action="store_true",
                        help="run only the mixed-abuse phase")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.only_abuse:
        with tempfile.TemporaryDirectory(prefix="mailplane-soak-") as tmp:
            return 0 if _abuse(Path(tmp), args) else 1
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
        ok &= _abuse(Path(tmp), args)
    print("\nsoak:", "OK — lost 0" if ok else "FAILED")
    return 0 if ok else 1


def _abuse(base: Path, args: argparse.Namespace) -> bool:
    started = time.monotonic()
    report = run_mixed_abuse(base / "abuse", seconds=args.abuse_seconds,
                             messages=args.abuse_messages, clients=args.clients,
                             seed=args.seed)
    print(f"\n== mixed abuse: floods, parallel guessing, harvesting, hostile MIME, SRS "
          f"guessing and a forwarding graph while {args.clients} good clients work "
          f"({time.monotonic() - started:.0f} s)")
    print(report.table())
    for line in report.problems()[:50]:
        print("PROBLEM", line)
    print("abuse phase:", "OK — good clients all answered, no 5xx, lost 0" if report.ok
          else "FAILED")
    return report.ok


if __name__ == "__main__":
    sys.exit(main())
