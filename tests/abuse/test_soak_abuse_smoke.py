"""A short run of ``make soak``'s mixed-abuse phase (issue 15): floods, parallel password
guessing, harvesting and hostile MIME against a real node while good clients work —
every good request answered without a 5xx, no accepted message lost.  Mail to hostile
destinations (MX hosts that never greet, DNS that never answers; issue 20) stays queued
while the good forwards go out."""

from __future__ import annotations

from pathlib import Path

from tests.abuse.soak_abuse import run_mixed_abuse


def test_good_clients_are_served_while_every_listener_is_abused(tmp_path: Path) -> None:
    report = run_mixed_abuse(tmp_path, seconds=8, messages=15, clients=3, seed=15)
    print(report.table())
    assert report.ok, "\n".join([report.table(), *report.good.problems[:20]])
    assert report.mail.acknowledged == 15 and report.good.submitted
    assert report.abuse["mx flood refused at once"] > 0
    assert report.abuse["hostile message answered 554"] > 0
    assert report.abuse["hostile-destination mail accepted"] > 0
    assert report.abuse["hostile-destination connections (never greeted)"] > 0
