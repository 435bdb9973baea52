"""Delivery Status Notifications (RFC 3464) for permanently failed recipients (issue 4).

The DSN is ``multipart/report; report-type=delivery-status`` (RFC 6522) with three parts:
a human-readable explanation (Japanese first, English beside it, UTF-8), the
``message/delivery-status`` fields (one per-message block, one block per failed recipient),
and the original header section as ``text/rfc822-headers`` (headers only: a bounce never
carries the whole message back).  It is sent with the null envelope sender and is only ever
built for a job whose sender is not null (RFC 3464 §2, RFC 5321 §4.5.5: no bounce of a
bounce) — the worker enforces that.
"""

from __future__ import annotations

import base64
import email.policy
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import Message
from email.utils import format_datetime, getaddresses, make_msgid

from mailplane.mail.mime import MimeTooComplex, parse
from mailplane.mail.rewrite import split_message

DSN_SENDER_LOCAL = "MAILER-DAEMON"


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    recipient: str
    status: str  # RFC 3463 enhanced code, class 5 (Action: failed)
    diagnostic: str  # the remote reply or our reason, one line
    remote_mta: str = ""  # host name that answered, if any


def _field_text(text: str, limit: int = 900) -> str:
    """One ASCII line: DSN fields are US-ASCII (RFC 3464 §2.1.1) and must not fold oddly."""
    flat = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()  # every control, not only CR/LF
    return flat.encode("ascii", "replace").decode("ascii")[:limit]


def _human_text(sender: str, failures: list[FailedRecipient], reporting_mta: str) -> str:
    lines = [
        "このメールは自動送信されています。",
        "お送りいただいたメールは、次の宛先に配信できませんでした。",
        "",
        "This is an automatically generated message.",
        "Your message could not be delivered to the following recipients.",
        "",
    ]
    for failure in failures:
        lines.append(f"  <{failure.recipient}>: {_field_text(failure.diagnostic, 300)}")
    lines += ["", f"Reporting-MTA: {reporting_mta}", f"Original sender: <{sender}>", ""]
    return "\r\n".join(lines)


def original_headers(raw: bytes) -> bytes:
    fields, _rest = split_message(raw)
    return b"".join(fields)


def build_dsn(
    *,
    original: bytes,
    original_sender: str,
    failures: list[FailedRecipient],
    reporting_mta: str,
    arrival_date: datetime,
    now: datetime,
) -> bytes:
    """Serialise the DSN (CRLF line endings) addressed to ``original_sender``."""
    if not original_sender:
        raise ValueError("never build a DSN for the null sender (no bounce of a bounce)")
    if not failures:
        raise ValueError("a DSN needs at least one failed recipient")
    boundary = f"=_mailplane_dsn_{secrets.token_hex(12)}"
    subject = Header("配信不能のお知らせ / Undelivered Mail Returned to Sender", "utf-8")
    head = [
        f"From: Mail Delivery System <{DSN_SENDER_LOCAL}@{reporting_mta}>",
        f"To: <{original_sender}>",
        f"Subject: {subject.encode(linesep=chr(13) + chr(10))}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=reporting_mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
    ]
    human = base64.encodebytes(
        _human_text(original_sender, failures, reporting_mta).encode("utf-8")
    ).replace(b"\n", b"\r\n")
    per_message = [f"Reporting-MTA: dns; {reporting_mta}",
                   f"Arrival-Date: {format_datetime(arrival_date)}"]
    blocks = ["\r\n".join(per_message)]
    for failure in failures:
        block = [
            f"Final-Recipient: rfc822; {_field_text(failure.recipient, 320)}",
            "Action: failed",
            f"Status: {failure.status}",
        ]
        if failure.remote_mta:
            block.append(f"Remote-MTA: dns; {_field_text(failure.remote_mta, 255)}")
        block.append(f"Diagnostic-Code: smtp; {_field_text(failure.diagnostic)}")
        block.append(f"Last-Attempt-Date: {format_datetime(now)}")
        blocks.append("\r\n".join(block))
    status_text = ("\r\n\r\n".join(blocks) + "\r\n").encode("ascii")
    delimiter = f"--{boundary}\r\n".encode("ascii")
    return b"".join(
        [
            ("\r\n".join(head) + "\r\n\r\n").encode("ascii"),
            b"This is a MIME-encapsulated delivery status report.\r\n\r\n",
            delimiter,
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Transfer-Encoding: base64\r\n\r\n",
            human,
            b"\r\n",
            delimiter,
            b"Content-Type: message/delivery-status\r\n\r\n",
            status_text,
            b"\r\n",
            delimiter,
            b"Content-Type: text/rfc822-headers\r\n\r\n",
            original_headers(original),
            b"\r\n",
            f"--{boundary}--\r\n".encode("ascii"),
        ]
    )


# --- reading bounces (issue 20: an SRS address relays only real bounces) -------------

#: How far into a bounce that is not an RFC 3464 report its failed recipient is looked for.
BOUNCE_TEXT_BYTES = 64 * 1024


def reported_recipients(raw: bytes) -> set[str] | None:
    """The recipients a delivery report (RFC 3464) is about — ``Final-Recipient`` and
    ``Original-Recipient`` of its ``message/delivery-status`` blocks, and
    ``X-Failed-Recipients`` (Exim, Gmail) — lower-cased; None when ``raw`` holds no
    delivery-status part (not a DSN).  Parsed within the MIME bounds (never
    ``RecursionError``); a message beyond them is no DSN of ours to relay."""
    try:
        message = parse(raw, policy=email.policy.compat32)
    except MimeTooComplex:
        return None
    found: set[str] = set()
    for value in message.get_all("X-Failed-Recipients", []):
        found.update(_addresses(str(value)))
    is_report = False
    stack: list[Message] = [message]
    while stack:
        part = stack.pop()
        payload = part.get_payload()
        if part.get_content_type() == "message/delivery-status":
            is_report = True
            blocks = payload if isinstance(payload, list) else []
            for block in blocks:
                if isinstance(block, Message):
                    for name in ("Final-Recipient", "Original-Recipient"):
                        for value in block.get_all(name, []):
                            found.update(_addresses(str(value).partition(";")[2]))
        elif isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))
    return found if is_report else None


def names_any(raw: bytes, addresses: set[str]) -> bool:
    """Whether a bounce that is not an RFC 3464 report names one of ``addresses`` in its
    first :data:`BOUNCE_TEXT_BYTES` (qmail-style bounces list the failed recipient in
    their text; an auto-reply names its author in ``From``)."""
    text = raw[:BOUNCE_TEXT_BYTES].lower()
    return any(address.lower().encode("utf-8", "replace") in text for address in addresses)


def _addresses(value: str) -> set[str]:
    return {addr.strip().strip("<>").lower()
            for _name, addr in getaddresses([value.replace("\r\n", " ")]) if "@" in addr}
