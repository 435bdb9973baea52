"""The administrator's virus report (SPEC §3, L4041-4069).

The infected message is not delivered.  Instead the recipient gets a report from the
system administrator with the original attached *with the infected parts removed*.  Which
parts: the scan step (:mod:`mailplane.filters.scan`) scans each leaf MIME part on its own
once the whole message was found infected; if no single part is to blame, every leaf part
is removed.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage

from mailplane.config.settings import Settings
from mailplane.mail.message import MessageContext
from mailplane.mail.mime import MimeTooComplex, leaf_parts, parse_email
from mailplane.mail.trace import header_safe
from mailplane.notices.render import build_notice, local_time, render_template

log = logging.getLogger(__name__)

REMOVED_NOTE = (
    "このパートはウイルスが検出されたため削除されました。\n"
    "This part was removed because a virus was found in it.\n"
)


#: Listed as removed when the original could not be taken apart (beyond the MIME bounds).
WHOLE_MESSAGE = "(the whole message)"


def neutralise(raw: bytes, infected: frozenset[int]) -> tuple[EmailMessage | None, list[str]]:
    """The original with infected leaves replaced by a short note, and the names of what
    went; ``None`` (nothing attached) when the original is beyond the MIME bounds."""
    try:
        message = parse_email(raw)
    except MimeTooComplex as exc:
        log.warning("virus report without the original: %s", exc)
        return None, [WHOLE_MESSAGE]
    leaves = leaf_parts(message)
    targets = infected or frozenset(range(len(leaves)))
    removed: list[str] = []
    for index, part in enumerate(leaves):
        if index not in targets:
            continue
        assert isinstance(part, EmailMessage)
        removed.append(header_safe(part.get_filename() or part.get_content_type(), 200))
        part.set_content(REMOVED_NOTE, charset="utf-8")
    return message, removed


def build_virus_report(
    settings: Settings,
    *,
    ctx: MessageContext,
    recipient: str,
    signature: str,
    infected_parts: frozenset[int],
    now: datetime,
) -> bytes:
    original, removed = neutralise(ctx.raw, infected_parts)
    subject, body = render_template(
        settings.templates_dir,
        "virus_report.txt",
        {
            "recipient": recipient,
            "received_at": local_time(settings, ctx.received_at),
            "sender": header_safe(", ".join(ctx.header_from_addresses)
                                   or ctx.envelope_sender or "<>"),
            "subject": header_safe(ctx.subject or ""),
            "signature": header_safe(signature, 200) or "unknown",
            "removed_parts": ", ".join(removed) or "-",
        },
    )
    try:
        return build_notice(settings, to=recipient, subject=subject, body=body, now=now,
                            attachment=original)
    except (ValueError, TypeError, LookupError, UnicodeError) as exc:
        # An original the serialiser cannot write back (a broken charset or header): the
        # report still goes out, without the attachment (one bad part never costs the
        # recipient the report, nor the other recipients their mail).
        log.warning("virus report without the original: %s: %s", type(exc).__name__, exc)
        return build_notice(settings, to=recipient, subject=subject, body=body, now=now)
