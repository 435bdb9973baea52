"""Profile one mailplane MX worker under load with py-spy (docs/performance.md "Where the
time goes").

Starts ``mailplane serve --role mx`` (one worker, every setting on, SQLite), warms it up,
records it with ``py-spy record --gil`` (Python CPU only; ``--wall`` for wall time) while
the bundled client sends mail, and prints the functions with the largest inclusive share.

Run: ``python -m bench.profile_mx --size 10240 --messages 1000`` (py-spy must be installed:
``pip install py-spy``; it needs ptrace permission, e.g. root or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import client, servers
from bench.dataset import address_of
from bench.run import prepare_mailplane
from bench.sender_domain import SendingDomain, ZoneServer


def top_functions(raw: Path, count: int) -> list[tuple[float, str]]:
    """Inclusive share per function from py-spy's ``raw`` (collapsed stacks) output."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        total += n
        seen = set()
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            key = f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]}"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    return [(100 * n / max(total, 1), key) for key, n in inclusive.most_common(count)]


def top_self(raw: Path, count: int) -> list[tuple[float, str]]:
    """Exclusive share per function (the innermost frame of each sample)."""
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        total += n
        name, _, where = stack.split(";")[-1].partition(" (")
        exclusive[f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]}"] += n
    return [(100 * n / max(total, 1), key) for key, n in exclusive.most_common(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--wall", action="store_true", help="wall time, not only GIL-holding")
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--all-roles", action="store_true",
                        help="profile mailplane serve with every role (as make run); "
                        "its worker sends forwards to smtp-sink")
    parser.add_argument("--keep", type=Path, default=None,
                        help="copy py-spy's raw collapsed stacks here")
    parser.add_argument("--auth", action="store_true",
                        help="sender authentication on, records from a loopback DNS server, "
                        "DKIM-signed mail (bench's mailplane-auth)")
    parser.add_argument("--workers", type=int, default=1,
                        help="MX worker processes (py-spy follows them with --subprocesses)")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
        "py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    workdir = Path(tempfile.mkdtemp(prefix="mailplane-profile-"))
    raw = workdir / "profile.txt"
    (workdir / "mailplane").mkdir()
    url = f"sqlite:///{workdir / 'mailplane' / 'mailplane.db'}"
    prepare_mailplane(url, 10_000)
    sink = servers.start_smtp_sink(workdir) if args.all_roles else None
    sending = SendingDomain.create()
    zone = ZoneServer(sending.zone) if args.auth else None
    server = servers.start_mailplane(
        workdir, workers=args.workers, database_url=url, all_roles=args.all_roles,
        smarthost_port=sink.port if isinstance(sink, servers.RunningServer) else 0,
        auth_nameserver=zone.address if zone is not None else "none")
    recipients = [address_of(n) for n in range(100)]
    try:
        asyncio.run(client.run_asyncio_load("127.0.0.1", server.port, sessions=args.sessions,
                                            messages=100, size=args.size,
                                            recipients=recipients, sign=sending.sign))
        spy = subprocess.Popen(
            [py_spy, "record", "-p", str(server.process.pid), "-r", str(args.rate), "-f", "raw",
             "-o", str(raw), "--nonblocking", *([] if args.wall else ["--gil"]),
             *(["--subprocesses"] if args.workers > 1 else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        result = asyncio.run(client.run_asyncio_load(
            "127.0.0.1", server.port, sessions=args.sessions, messages=args.messages,
            size=args.size, recipients=recipients, sign=sending.sign))
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        spy.wait(30)
        print(f"{result.sent} sent, {result.failed} failed, "
              f"{result.sent / result.elapsed:.0f} msgs/s while profiled")
        print("inclusive:")
        for share, key in top_functions(raw, args.top):
            print(f"{share:5.1f}% {key}")
        print("exclusive (self):")
        for share, key in top_self(raw, args.top // 2):
            print(f"{share:5.1f}% {key}")
        if args.keep:
            shutil.copy(raw, args.keep)
    finally:
        server.stop()
        if zone is not None:
            zone.close()
        if isinstance(sink, servers.RunningServer):
            sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
