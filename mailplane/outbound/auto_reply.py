"""Auto-reply decision and message (SPEC §6) — pure, no I/O.

Suppression follows RFC 3834 §2 and §3.1 and RFC 5230 §4.6 practice: never answer a
bounce, another robot, a list, a message the sender asked not to be answered
(``X-Auto-Response-Suppress``, Microsoft), quarantined or virus mail, ourselves, or (when
configured) mail that does not name the address in To/Cc — a Bcc'd or list copy
(RFC 3834 §2).  The 24 h rule is the ledger's job (``auto_reply_ledger_repo.claim_reply``).

The reply (RFC 3834 §3.1): sent to the envelope sender (Return-Path), ``Auto-Submitted:
auto-replied``, ``In-Reply-To``/``References`` from the original Message-ID, ``Subject: Re:``
once, UTF-8 text/plain encoded by the email package (SMTP policy), null envelope sender by
default (RFC 3834 §3.3).
"""

from __future__ import annotations

import email.policy
import re
from datetime import datetime, tzinfo
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses, make_msgid

from mailplane.message import decode_header_text, unfold
from mailplane.policy import AutoReplyPolicy

NULL_SENDER = "null_sender"
ROBOT_SENDER = "robot_sender"
AUTO_SUBMITTED = "auto_submitted"
PRECEDENCE = "precedence"
MAILING_LIST = "mailing_list"
RESPONSE_SUPPRESSED = "x_auto_response_suppress"
QUARANTINED = "quarantined_or_virus"
OWN_ADDRESS = "own_address"
NOT_ADDRESSED = "not_in_to_cc"

_ROBOT_LOCALS = frozenset({
    "mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply",
    "do-not-reply", "do_not_reply", "listserv", "majordomo", "bounce", "bounces",
})
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv)\s*(?:\[\d+\])?\s*[:：]\s*", re.IGNORECASE)


def _values(headers: Message, name: str) -> list[str]:
    return [unfold(str(value)) for value in headers.get_all(name, [])]


def is_robot_sender(sender: str) -> bool:
    """MAILER-DAEMON, postmaster, ``*-request``, ``owner-*``, no-reply style senders."""
    local = sender.rpartition("@")[0].lower()
    base = local.split("+", 1)[0]
    return (
        base in _ROBOT_LOCALS
        or base.endswith(("-request", "-bounces", "-owner"))
        or base.startswith(("owner-", "bounce-", "bounces-"))
    )


def suppression_reason(
    *,
    address: str,
    envelope_sender: str,
    headers: Message,
    quarantined_or_virus: bool,
    require_address_in_recipients: bool = True,
) -> str | None:
    """Why not to reply (one of the constants above), or None when a reply is allowed."""
    sender = envelope_sender.strip().strip("<>").lower()
    if not sender:
        return NULL_SENDER
    if quarantined_or_virus:
        return QUARANTINED
    if sender == address.lower():
        return OWN_ADDRESS
    if is_robot_sender(sender):
        return ROBOT_SENDER
    for value in _values(headers, "Auto-Submitted"):
        if value.split(";", 1)[0].strip().lower() != "no":
            return AUTO_SUBMITTED
    for value in _values(headers, "Precedence"):
        if value.strip().lower() in ("bulk", "junk", "list"):
            return PRECEDENCE
    if any(name.lower().startswith("list-") for name in headers):
        return MAILING_LIST
    for value in _values(headers, "X-Auto-Response-Suppress"):
        tokens = {token.strip().lower() for token in value.split(",")}
        if tokens & {"all", "oof"}:
            return RESPONSE_SUPPRESSED
    if require_address_in_recipients:
        named = {
            addr.lower()
            for _name, addr in getaddresses(
                [v for name in ("To", "Cc", "Resent-To", "Resent-Cc")
                 for v in _values(headers, name)]
            )
        }
        if address.lower() not in named:
            return NOT_ADDRESSED
    return None


def choose_message(policy: AutoReplyPolicy, sender: str) -> str | None:
    """Special senders get the special message, everyone else the default; empty = none."""
    if not policy.enabled:
        return None
    specials = {s.lower() for s in policy.special_senders}
    text = policy.special_message if sender.lower() in specials else policy.default_message
    return text if text.strip() else None


def reply_subject(original: object) -> str:
    """``Re: <original>`` once, whatever Re:/RE:/Re[2]: prefixes the original carried.

    ``original`` is the raw header value (a str, or a compat32 ``Header`` object)."""
    subject = decode_header_text(unfold(str(original or ""))).strip()
    while True:
        stripped = _REPLY_PREFIX.sub("", subject, count=1)
        if stripped == subject:
            break
        subject = stripped
    return f"Re: {subject}" if subject else "Re:"


def build_reply(
    *,
    address: str,
    sender: str,
    original_headers: Message,
    body: str,
    hostname: str,
    now: datetime,
    tz: tzinfo,
    subject: str | None = None,
) -> bytes:
    """The reply message bytes (CRLF).  Stage it with envelope sender ``""`` by default."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = address
    message["To"] = sender
    message["Subject"] = subject if subject else reply_subject(original_headers.get("Subject"))
    message["Date"] = format_datetime(now.astimezone(tz))
    message["Message-ID"] = make_msgid(domain=hostname)
    original_id = unfold(str(original_headers.get("Message-ID", ""))).strip()
    if original_id:
        message["In-Reply-To"] = original_id
        references = unfold(str(original_headers.get("References", ""))).split()
        message["References"] = " ".join([*references, original_id][-20:])
    message["Auto-Submitted"] = "auto-replied"
    message["MIME-Version"] = "1.0"
    # base64 explicitly: the SMTP policy would pick 8bit for short lines, which a hop
    # without 8BITMIME must not receive (RFC 6152).
    message.set_content(body, charset="utf-8", cte="base64")
    return message.as_bytes(policy=email.policy.SMTP)
