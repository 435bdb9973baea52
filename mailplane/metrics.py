"""Prometheus metrics (DESIGN layout: per listener, filter decision, latency).

One dedicated :data:`REGISTRY` (not the process-global default), which the API serves at
``/metrics`` with ``prometheus_client.generate_latest(REGISTRY)``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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

# --- management API under abuse (SPEC §8a; docs/security.md) ---------------------------

API_REFUSALS = Counter(
    "mailplane_api_refusals",
    "API requests refused by a limit before any work: body_too_large, body_without_credentials"
    " (413/401); unauthenticated_per_ip, per_key (429); busy, hashing_busy (503).",
    ["reason"],
    registry=REGISTRY,
)
API_REQUESTS_ACTIVE = Gauge(
    "mailplane_api_requests_active",
    "API requests holding a database turn now (at most api.max_concurrent_requests).",
    registry=REGISTRY,
)
API_REQUESTS_WAITING = Gauge(
    "mailplane_api_requests_waiting",
    "API requests waiting for a database turn now (each at most api.queue_timeout_seconds).",
    registry=REGISTRY,
)
API_KEY_CHECKS = Counter(
    "mailplane_api_key_checks",
    "API key verifications by scheme (digest: keyed SHA-256; argon2: a key issued before"
    " schema 0005, checked once then moved to the digest) and outcome (ok, rejected).",
    ["scheme", "outcome"],
    registry=REGISTRY,
)

# --- limits under abuse (SPEC §8a, docs/security.md) ----------------------------------

LIMIT_REFUSALS = Counter(
    "mailplane_limit_refusals",
    "Requests refused by a limit under abuse, by listener and limit (connections, rates,"
    " error tarpit, login guard, sending quotas, MIME bounds).",
    ["listener", "limit"],
    registry=REGISTRY,
)
LOGIN_FAILURES = Counter(
    "mailplane_login_failures",
    "Failed logins by listener and reason (wrong_password, same_password, locked); the"
    " log shows a bounded number of them per minute.",
    ["listener", "reason"],
    registry=REGISTRY,
)
CONNECTIONS = Gauge(
    "mailplane_connections_active",
    "Sessions open on a listener in this process.",
    ["listener"],
    registry=REGISTRY,
)
TLS_HANDSHAKE_FAILURES = Counter(
    "mailplane_tls_handshake_failures",
    "TLS handshakes that failed (STARTTLS or implicit TLS): clients offering only TLS 1.0/1.1"
    " or no common cipher, scanners, connections dropped mid-handshake.",
    ["listener"],
    registry=REGISTRY,
)
TARPIT_DELAYS = Counter(
    "mailplane_tarpit_delays",
    "SMTP error replies delayed because the session had passed the soft error limit.",
    ["listener"],
    registry=REGISTRY,
)
RECIPIENT_STEP_FAILURES = Counter(
    "mailplane_recipient_step_failures",
    "An optional per-recipient step (auto-reply, forward) that could not be built; the"
    " message was still delivered to every recipient.",
    ["listener", "step"],
    registry=REGISTRY,
)
SUPPRESSED_LOG_LINES = Counter(
    "mailplane_log_lines_suppressed",
    "Repeated log lines folded into one line per interval (a flood of the same error).",
    ["logger"],
    registry=REGISTRY,
)
MAILDIR_ORPHANS_REMOVED = Counter(
    "mailplane_maildir_orphans_removed",
    "Files older than 36 h removed from Maildir tmp/ (left by a crash; maildir(5)).",
    registry=REGISTRY,
)
OUTBOUND_SIGNING = Counter(
    "mailplane_outbound_signing",
    "Messages about to leave the platform by outcome of DKIM signing: signed, unsigned"
    " (no active selector, or a message dkimpy cannot parse), deferred (an active key"
    " unusable on this node, [dkim] on_error = tempfail).",
    ["outcome"],
    registry=REGISTRY,
)
AUTO_REPLIES = Counter(
    "mailplane_auto_replies",
    "Auto-replies due after the verdict, by outcome: queued; replied_recently (one per"
    " sender per 24 h); capped_minute, capped_day (the per-address caps of RFC 3834 §2 —"
    " the mail was delivered without a reply).",
    ["outcome"],
    registry=REGISTRY,
)
QUOTA_OVERFLOWS = Counter(
    "mailplane_quota_overflows",
    "Recipients whose mailbox (inbox + quarantine) could not take a message at DATA while"
    " other recipients did, by what the sender got: dsn, or none (a sender we must not"
    " answer); the message was not stored for that recipient.",
    ["listener", "notice"],
    registry=REGISTRY,
)
DELETED_RECIPIENTS = Counter(
    "mailplane_deleted_recipients",
    "Copies not stored because their address was deleted after the node's last policy"
    " refresh (found inside the delivery transaction).",
    registry=REGISTRY,
)

# --- relay, amplification and backscatter (issue 20; docs/security.md) ---------------

FORWARDS_WITHHELD = Counter(
    "mailplane_forwards_withheld",
    "Forwards not sent, the message kept in the inbox instead: spam (judged spam, never"
    " forwarded outside the platform), rate_limit (the address's hourly remote-forward"
    " limit), loop (Delivered-To or hop count), expansion_limit (forwarding.max_expansion).",
    ["reason"],
    registry=REGISTRY,
)
SRS_RETURNS = Counter(
    "mailplane_srs_returns",
    "Mail to SRS addresses: relayed, or refused by reason (invalid, not_emitted, not_null,"
    " not_a_bounce, rate_address, rate_ip, virus, spam).",
    ["outcome"],
    registry=REGISTRY,
)
DSNS_WITHHELD = Counter(
    "mailplane_dsns_withheld",
    "DSNs not sent: unauthenticated (the sender of a forward did not authenticate at our"
    " MX), rate_limit (outbound.dsn_per_recipient_per_hour).",
    ["reason"],
    registry=REGISTRY,
)

# --- the outbound queue (issue 20; docs/security.md "Outbound queue") ------------------

OUTBOUND_ACTIVE = Gauge(
    "mailplane_outbound_deliveries_active",
    "Deliveries in flight in this worker, by lane (local: hosted recipients; remote:"
    " attempts to other hosts, at most outbound.concurrency_limit).",
    ["lane"],
    registry=REGISTRY,
)
OUTBOUND_DEFERRALS = Counter(
    "mailplane_outbound_deferrals",
    "Remote deliveries deferred by a limit: attempt_budget (an attempt cut at"
    " outbound.attempt_budget_seconds), dead_destination (not tried: no host of that"
    " destination answered lately), shutdown (cut or given back by a stopping worker).",
    ["reason"],
    registry=REGISTRY,
)
OUTBOUND_DEAD_DESTINATIONS = Counter(
    "mailplane_outbound_dead_destinations",
    "Destinations declared dead (no host answered an attempt) for"
    " outbound.dead_destination_seconds.",
    registry=REGISTRY,
)
SENDER_AUTHENTICATION = Counter(
    "mailplane_sender_authentication",
    "Results of SPF, DKIM (per signature), DMARC and ARC on the MX (SPEC §8b); a rise of "
    "temperror means the resolver is slow or unreachable.",
    ["check", "result"],
    registry=REGISTRY,
)
