"""Address syntax rules, worded as the manual words them (SPEC §1, L3838-3853).

The hosted local part is stricter than RFC 5321 on purpose: 3-20 characters of a-z 0-9 - _,
never starting or ending with - or _, and upper case is refused rather than silently lowered
so the customer sees exactly the address they will get.
"""

from __future__ import annotations

import re

LOCAL_PART_RE = re.compile(r"[a-z0-9_-]+")
_DOMAIN_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_REMOTE_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def local_part_violation(value: str) -> str | None:
    """The first hosted-local-part rule ``value`` breaks, or None."""
    if not 3 <= len(value) <= 20:
        return "must be 3-20 characters"
    if any("A" <= ch <= "Z" for ch in value):
        return "upper case letters are not allowed; use lower case (a-z)"
    if not LOCAL_PART_RE.fullmatch(value):
        return "may contain only a-z, 0-9, - and _"
    if value[0] in "-_":
        return f"cannot start with {value[0]}"
    if value[-1] in "-_":
        return f"cannot end with {value[-1]}"
    return None


def domain_violation(domain: str) -> str | None:
    if not domain or len(domain) > 253:
        return "domain must be 1-253 characters"
    labels = domain.lower().split(".")
    if len(labels) < 2:
        return "domain must contain a dot"
    if not all(_DOMAIN_LABEL_RE.fullmatch(label) for label in labels):
        return "domain may contain only letters, digits, - and dots between labels"
    return None


def email_rule_violation(value: str) -> str | None:
    """Basic RFC 5321 mailbox check for addresses customers type (contact, forwarding, lists)."""
    if not value or len(value) > 254:
        return "must be a mail address of at most 254 characters"
    if value.count("@") != 1:
        return "must be a mail address like user@example.jp"
    local, _, domain = value.partition("@")
    if not local or len(local) > 64 or not _REMOTE_LOCAL_RE.fullmatch(local):
        return "the part before @ is not valid"
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return "the part before @ cannot start or end with a dot or contain two dots in a row"
    return domain_violation(domain)


def split_address(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain.lower()
