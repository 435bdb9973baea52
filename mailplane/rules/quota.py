"""Mailbox quota (SPEC §8; 004 L474): 1 GB by default, an operator may set it between
1 MB and the configured maximum (10 GB).

What counts is everything the address keeps on the server: the inbox **and** the
quarantine (as Dovecot counts a Junk folder; SPEC §5, §8a "quarantine is bounded").
:func:`fits` is the one admission rule, used at RCPT (with the declared ``SIZE=``) and
at DATA (with each recipient's copy): a mailbox still under its quota takes a message
that ends at most ``addresses.quota_grace_percent`` over it (Dovecot's ``quota_grace``),
so a mailbox at 99 % is not refused a small message, yet none can grow without bound.
Enforcement (``452 4.2.2``, the 90 % notice) is the delivery's:
:mod:`mailplane.delivery.mailbox_quota`."""

from __future__ import annotations

from mailplane.rules import RuleViolation

MIN_QUOTA_BYTES = 1024**2


def check_quota(quota_bytes: int, *, limit: int) -> None:
    if not MIN_QUOTA_BYTES <= quota_bytes <= limit:
        raise RuleViolation("quota_bytes", "must be between 1 MB and {limit} bytes", limit=limit)


def fits(used: int, size: int, *, quota: int, grace_percent: int) -> bool:
    """Whether a message of ``size`` bytes may be stored in a mailbox using ``used`` of
    ``quota`` bytes: the mailbox is under its quota now and ends at most the grace over
    it.  ``size`` 0 asks only whether the mailbox is full (RCPT without ``SIZE=``)."""
    return used < quota and used + size <= quota + quota * grace_percent // 100
