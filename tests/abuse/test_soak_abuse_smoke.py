"""A short run of ``make soak``'s mixed-abuse phase (issue 15): floods, parallel password
guessing, harvesting and hostile MIME against a real node while good clients work —
every good request answered without a 5xx, no accepted message lost.  Mail to hostile
destinations (MX hosts that never greet, DNS that never answers; issue 20) stays queued
while the good forwards go out.  Issue 20's relays stay shut under load: forged SRS
addresses are all refused, none relayed, the log not growing with them; mail sprayed into
a forwarding graph reaches each mailbox once and goes out at most the hourly limit."""

from __future__ import annotations

from pathlib import Path

from tests.abuse.soak_abuse import AbuseReport, run_mixed_abuse


def test_good_clients_are_served_while_every_listener_is_abused(tmp_path: Path) -> None:
    report = run_mixed_abuse(tmp_path, seconds=8, messages=15, clients=3, seed=15)
    print(report.table())
    assert report.ok, "\n".join([report.table(), *report.problems()[:20]])
    assert report.mail.acknowledged == 15 and report.good.submitted
    assert report.abuse["mx flood refused at once"] > 0
    assert report.abuse["hostile message answered 554"] > 0
    assert report.abuse["hostile-destination mail accepted"] > 0
    assert report.abuse["hostile-destination connections (never greeted)"] > 0
    srs_guessing_is_refused(report)
    the_forwarding_graph_holds(report)


def srs_guessing_is_refused(report: AbuseReport) -> None:
    """Every forged SRS address refused (550 5.1.1, then 421 once the guesser's budget is
    spent), nothing relayed, and the log lines about it bounded by the throttle — fewer
    than the guesses, which before issue 20 each wrote one."""
    abuse, log = report.abuse, report.log
    assert log is not None
    assert abuse["srs guesses accepted"] == 0 and report.srs_relayed == 0
    assert abuse["srs guesses answered otherwise"] == 0
    assert abuse["srs guesses answered 550"] > 0 and abuse["srs guesses answered 421"] > 0
    assert log.srs_lines <= log.srs_bound < abuse["srs guesses answered"]
    # The whole log, every abuser and good client together: a line or two per login and
    # per submitted message (as Postfix writes), none per flooded connection, harvested
    # address or sprayed message — thousands of each.
    logged = (sum(report.good.answers.values())
              + sum(n for kind, n in abuse.items() if kind.startswith("guess answered"))
              + abuse["hostile-destination mail accepted"])
    assert log.bytes < 32 * 1024 + 512 * logged, log


def the_forwarding_graph_holds(report: AbuseReport) -> None:
    """One copy per mailbox and at the external address; out at most the limit, and
    exactly the limit for every forwarder that had more to send."""
    graph = report.graph
    assert graph is not None
    assert graph.problems == [] and graph.most_copies == 1
    assert not report.abuse["graph recipients refused"]
    assert graph.accepted > 3 * graph.limit
    assert graph.at_limit(), "the sprayer never reached the hourly limit"
    for forwarder in graph.at_limit():
        assert graph.external[forwarder] <= graph.bound
        if graph.exact:
            assert graph.external[forwarder] == graph.limit
