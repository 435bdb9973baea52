"""Mailbox quota (SPEC §8; 004 L474): 1 GB by default, an operator may set it between
1 MB and the configured maximum (10 GB).  Enforcement (``452 4.2.2``, the 90 % notice) is
the delivery's: :mod:`mailplane.delivery.local`."""

from __future__ import annotations

from mailplane.rules import RuleViolation

MIN_QUOTA_BYTES = 1024**2


def check_quota(quota_bytes: int, *, limit: int) -> None:
    if not MIN_QUOTA_BYTES <= quota_bytes <= limit:
        raise RuleViolation("quota_bytes", "must be between 1 MB and {limit} bytes", limit=limit)
