"""Mail address syntax for addresses customers type (contact, forwarding destinations,
list entries), worded as the manual words rules.  The stricter hosted local part is a
registration rule: :mod:`mailplane.rules.registration`."""

from __future__ import annotations

import re

from mailplane.i18n import Text

_DOMAIN_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_REMOTE_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def domain_violation(domain: str) -> Text | None:
    if not domain or len(domain) > 253:
        return Text("domain must be 1-253 characters")
    labels = domain.lower().split(".")
    if len(labels) < 2:
        return Text("domain must contain a dot")
    if not all(_DOMAIN_LABEL_RE.fullmatch(label) for label in labels):
        return Text("domain may contain only letters, digits, - and dots between labels")
    return None


def email_rule_violation(value: str) -> Text | None:
    """Basic RFC 5321 mailbox check for addresses customers type (contact, forwarding, lists)."""
    if not value or len(value) > 254:
        return Text("must be a mail address of at most 254 characters")
    if value.count("@") != 1:
        return Text("must be a mail address like user@example.jp")
    local, _, domain = value.partition("@")
    if not local or len(local) > 64 or not _REMOTE_LOCAL_RE.fullmatch(local):
        return Text("the part before @ is not valid")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return Text(
            "the part before @ cannot start or end with a dot or contain two dots in a row")
    return domain_violation(domain)
