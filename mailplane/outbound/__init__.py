"""Outbound mail (SPEC §5, §6; issue 4): one durable queue for everything mailplane sends —
forwards, auto-replies, notices, DSNs — and the worker that delivers it."""
