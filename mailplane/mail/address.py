"""Mail address syntax for addresses customers type (contact, forwarding destinations,
list entries, sign-in), worded as the manual words rules.  The stricter hosted local part is
a registration rule: :mod:`mailplane.rules.registration`.

Addresses are taken as people type them (issue 22 finding 8): a Japanese keyboard in
full-width mode gives ``ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ``, and an IME in kana mode turns the dot
into ``。``.  :func:`typed_address` folds both (NFKC, then the ideographic full stops that
UTS #46 maps to a dot), the same way for every form, so the deny list, forwarding, the
contact address and sign-in agree on what an address is.  What is left that is not ASCII
(kana, kanji) cannot be in an address here, and the message says so rather than naming a
rule the customer cannot see."""

from __future__ import annotations

import re
import unicodedata

from mailplane.i18n import Text

_DOMAIN_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_REMOTE_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


#: Full stops an IME types for "." (UTS #46 maps them to U+002E in domain names).
_FULL_STOPS = str.maketrans({"\u3002": ".", "\uff61": "."})


def typed_address(raw: str) -> str:
    """An address as typed, folded to what the customer meant: NFKC (全角 → 半角), the
    ideographic full stop ``。`` as ``.``, surrounding spaces removed.  Case is kept."""
    return unicodedata.normalize("NFKC", raw).translate(_FULL_STOPS).strip()


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
    if not value.isascii():
        return Text("a mail address can contain only half-width characters (no Japanese or"
                    " accented characters); type it in half-width letters, digits and"
                    " symbols")
    if value.count("@") != 1:
        return Text("must be a mail address like user@example.jp")
    local, _, domain = value.partition("@")
    if not local or len(local) > 64 or not _REMOTE_LOCAL_RE.fullmatch(local):
        return Text("the part before @ is not valid")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return Text(
            "the part before @ cannot start or end with a dot or contain two dots in a row")
    return domain_violation(domain)
