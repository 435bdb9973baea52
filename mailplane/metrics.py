"""Prometheus metrics (DESIGN layout: per listener, filter decision, latency).

One dedicated :data:`REGISTRY` (not the process-global default), which the API serves at
``/metrics`` with ``prometheus_client.generate_latest(REGISTRY)``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter(
    "mailplane_messages",
    "Messages that reached the end of DATA, by listener and SMTP outcome.",
    ["listener", "outcome"],
    registry=REGISTRY,
)
RECIPIENT_DECISIONS = Counter(
    "mailplane_recipient_decisions",
    "Per-recipient dispositions of accepted messages (inbox, quarantine, virus_report).",
    ["listener", "disposition"],
    registry=REGISTRY,
)
FILTER_HITS = Counter(
    "mailplane_filter_hits",
    "Filter verdicts that hit, per recipient.",
    ["listener", "filter"],
    registry=REGISTRY,
)
DATA_LATENCY = Histogram(
    "mailplane_data_to_reply_seconds",
    "Time from the end of DATA to the final reply (250 only after fsync and commit).",
    ["listener"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def outcome_of(code: int) -> str:
    if code < 300:
        return "accepted"
    return "tempfail" if code < 500 else "rejected"

OVERSEAS_REFUSALS = Counter(
    "mailplane_overseas_send_refusals",
    "Submission MAIL FROM refused by the overseas-send window (SPEC §7), by peer country.",
    ["country"],
    registry=REGISTRY,
)
