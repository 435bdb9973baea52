"""``mx.workers = 2``: the node starts one extra MX process on the same port (SO_REUSEPORT),
both deliver, and SIGTERM on the node stops the worker too (DESIGN "Keeping the SMTP path
fast")."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

from bench import servers
from bench.dataset import DatasetShape, address_of, populate
from mailplane.storage.db import make_engine
from mailplane.storage.migrate import upgrade


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_two_workers_share_the_port_and_stop_with_the_node(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mp.db'}"
    upgrade(url)
    engine = make_engine(url)
    populate(engine, DatasetShape(addresses=10, forwarding=False, auto_reply=False))
    engine.dispose()
    port = servers.free_port()
    config = servers.write_mailplane_config(tmp_path, port, workers=2, database_url=url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILPLANE_")}
    env["MAILPLANE_CONFIG"] = str(config)
    node = subprocess.Popen(
        [str(Path(sys.executable).parent / "mailplane"), "serve", "--role", "mx"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        servers.wait_ready(port, node, timeout=60)
        workers = [pid for pid in _children(node.pid)
                   if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
                   and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 1
        for n in range(12):
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.sendmail("alice@sender.example", [address_of(n % 10)],
                                b"From: alice@sender.example\r\nSubject: hi\r\n\r\nbody\r\n")
        delivered = list((tmp_path / "mailplane-var" / "mail").rglob("new/*"))
        assert len(delivered) == 12
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
    assert node.returncode == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(
            f"/proc/{pid}/stat").read_text().split(") ")[1][:1]
