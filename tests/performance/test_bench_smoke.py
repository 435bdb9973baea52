"""``make bench-quick`` as a smoke check (issue 6): the harness starts every server, moves
real mail through each and writes its JSON.  No timing assertions — figures are only
meaningful as ratios on a quiet machine (docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_quick_bench_delivers_through_every_server_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(output.read_text())
    rows = report["smtp"]["rows"]
    servers = {row["server"] for row in rows}
    assert {"baseline-durable", "mailplane", "mailplane-auth"} <= servers
    # Issue 21: authentication on (records from the bench's DNS server) ÷ off, measured.
    assert report["smtp"]["auth_targets"]
    assert "sender authentication (issue 21" in proc.stdout
    for row in rows:
        assert row["failed"] == 0, row
        assert row["sent"] > 0, row
    assert any("vs_baseline" in row for row in rows)
    # The Postfix column (issue 13): measured, or skipped with the reason printed.
    skipped = [n for n in report["smtp"]["notes"] if n.startswith("postfix column skipped")]
    if skipped:
        assert skipped[0] in proc.stdout
    else:
        assert {"postfix", "postfix-maildir"} <= servers
        assert any("vs_postfix" in row for row in rows)
    assert "targets (issue 13" in proc.stdout
    assert report["smtp"]["targets"]
    assert report["control_plane"]["addresses"] > 0
    assert report["api"]["get_addresses"]["rps"] > 0
    assert report["signing"]["queue"]["sent"] > 0  # DKIM signing's figures (issue 21)
    assert "DKIM signing" in proc.stdout
    # Issue 20: good outbound mail drained with and without hostile destinations ahead.
    outbound = report["outbound"]["rows"]
    assert set(outbound) == {"concurrent-clean", "concurrent-hostile", "serial-clean",
                             "serial-hostile"}
    assert all(row["msgs_per_s"] > 0 for row in outbound.values())
    assert "mailplane" in proc.stdout


def test_postfix_column_is_skipped_with_a_reason_when_postfix_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import postfix, servers

    monkeypatch.setattr(postfix, "POSTFIX", str(tmp_path / "no-such-postfix"))
    result = servers.start_postfix(tmp_path, ["u0@a01.example.net"])
    assert isinstance(result, str)
    assert "postfix column skipped" in result and "not installed" in result
