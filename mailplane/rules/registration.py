"""Registering an address (SPEC §1, L3805-4039): every rule the API applies before an
address exists, in one place.

- **Local part** (L3838-3853): 3-20 characters of a-z 0-9 - _, never starting or ending
  with - or _; upper case is refused rather than silently lowered, and full-width input
  (全角) rather than silently folded, so the customer sees exactly the address they will
  get — each with a message that names the cause.
- **Reserved local parts** (``[addresses] reserved_local_parts``, the default list in
  :mod:`mailplane.config.sections`): the names the ISP's own
  mail needs on every domain it hosts, and every ``<letter>0<digit>`` subdomain is one —
  RFC 5321 §4.5.1 ``postmaster``; RFC 2142's operational mailboxes (``abuse``, ``noc``,
  ``security``; ``hostmaster``, ``webmaster``, ``www``, ``usenet``, ``news``, ``uucp``,
  ``ftp``); the names certificate authorities mail to prove control of a domain (CA/B
  Forum Baseline Requirements 3.2.2.4.4: ``admin``, ``administrator``, ``hostmaster``,
  ``postmaster``, ``webmaster`` — whoever holds one can get a certificate for the
  subdomain); and the system senders people trust (``root``, ``mailer-daemon``).  RFC
  2142's business names (``info``, ``sales``, ``support``, ``marketing``) are left to
  customers by default: they carry no operator function on a shared subdomain and
  customers ask for them; an ISP that wants them reserved adds them to the list.
- **Subdomain**: one of the configured pattern's values (default ``[a-z]0[0-9]``,
  :mod:`mailplane.rules.subdomains` offers 3 free candidates a page); the base domain one
  of the configured ones.
- **Terms** must be accepted; a suspended contract registers nothing.
- **Slots** (L3807): a contract includes 5 addresses; each further one is a paid slot
  (330 yen a month) that the caller must confirm with ``accept_charge``.  Deleting an
  address that used a paid slot gives that slot up (:func:`paid_slot_freed`): the next
  address beyond the included ones is a new purchase and asks for the charge again
  (004 L474-485: each purchase is charged, even take-cancel-take within a month).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailplane.i18n import N_, Text
from mailplane.rules import RuleViolation
from mailplane.rules.subdomains import expand

#: The rules as data, published to the portal (``GET /v1/rules``) so the browser checks
#: what the API checks; :func:`local_part_violation` applies them in this order.
LOCAL_PART_MIN = 3
LOCAL_PART_MAX = 20
LOCAL_PART_CHARS = "a-z0-9_-"
LOCAL_PART_EDGE = "-_"
LOCAL_PART_RE = re.compile(rf"[{LOCAL_PART_CHARS}]+")
#: How many subdomain candidates one page offers (L3861-3876).
CANDIDATES_PER_PAGE = 3


def local_part_violation(value: str) -> Text | None:
    """The first hosted-local-part rule ``value`` breaks, or None."""
    if not value.isascii():
        return Text("only half-width characters can be used (no full-width, Japanese or"
                    " accented characters); type it in half-width lower-case letters and"
                    " digits")
    if not LOCAL_PART_MIN <= len(value) <= LOCAL_PART_MAX:
        return Text("must be {min}-{max} characters", min=LOCAL_PART_MIN, max=LOCAL_PART_MAX)
    if any("A" <= ch <= "Z" for ch in value):
        return Text("upper case letters are not allowed; use lower case (a-z)")
    if not LOCAL_PART_RE.fullmatch(value):
        return Text("may contain only a-z, 0-9, - and _")
    if value[0] in LOCAL_PART_EDGE:
        return Text("cannot start with {char}", char=value[0])
    if value[-1] in LOCAL_PART_EDGE:
        return Text("cannot end with {char}", char=value[-1])
    return None


def reserved_violation(value: str, reserved: Sequence[str]) -> Text | None:
    """``value`` is one of the operator's reserved names (module docstring)."""
    if value.lower() in reserved:
        return Text("{local_part} is reserved for the provider's own mail; choose another",
                    local_part=value)
    return None


def check_local_part(value: str) -> str:
    problem = local_part_violation(value)
    if problem:
        raise RuleViolation("local_part", problem)
    return value


def base_domain(requested: str | None, configured: list[str]) -> str:
    """The requested base domain (default: the first configured one)."""
    if requested is None:
        return configured[0]
    if requested.lower() not in configured:
        raise RuleViolation("base_domain", "must be one of: {domains}",
                            domains=", ".join(configured))
    return requested.lower()


def check_registration(*, accept_terms: bool, subdomain: str, pattern: str,
                       local_part: str = "", reserved: Sequence[str] = ()) -> None:
    """The local part not reserved, terms accepted and the subdomain one the pattern
    allows."""
    problem = reserved_violation(local_part, reserved)
    if problem:
        raise RuleViolation("local_part", problem)
    if not accept_terms:
        raise RuleViolation("accept_terms", "the terms of use must be accepted")
    if subdomain not in expand(pattern):
        raise RuleViolation(
            "subdomain", "must be one of the offered candidates (one letter and 00-09, e.g. e06)")


@dataclass(frozen=True, slots=True)
class SlotDecision:
    """What registering one more address does to the contract's slots."""

    extra_slots: int
    paid_slot: bool


class ChargeRequired(RuleViolation):
    """Every contracted slot is in use: one more costs ``charge_yen`` a month."""

    def __init__(self, *, contracted: int, charge_yen: int) -> None:
        super().__init__(
            "accept_charge",
            N_("Every address slot of this contract ({contracted}) is in use. An additional"
            " address costs {charge} yen per month (tax included); send accept_charge: true"
            " to confirm."), contracted=contracted, charge=charge_yen)
        self.contracted = contracted
        self.charge_yen = charge_yen


def next_slot(*, included: int, extra_slots: int, used: int, accept_charge: bool,
              charge_yen: int) -> SlotDecision:
    """One more address on a contract with ``used`` addresses: free while an included or
    already paid slot is free, else a new paid slot — only with ``accept_charge``."""
    contracted = included + extra_slots
    if used < contracted:
        return SlotDecision(extra_slots=extra_slots, paid_slot=False)
    if not accept_charge:
        raise ChargeRequired(contracted=contracted, charge_yen=charge_yen)
    return SlotDecision(extra_slots=extra_slots + used + 1 - contracted, paid_slot=True)


def paid_slot_freed(*, included: int, extra_slots: int, remaining: int) -> bool:
    """After deleting an address (``remaining`` left on the contract): did it use a paid
    slot?  It did when every included slot was still in use without it — then one paid
    slot ends with it.  Paid slots bought ahead and never used are kept."""
    return extra_slots > 0 and remaining >= included
