"""The administrator's virus report (SPEC §3, L4041-4069).

The infected message is not delivered.  Instead the recipient gets a report from the
system administrator with the original attached *with the infected parts removed*.  Which
parts: the scan step (:mod:`mailplane.filters.scan`) scans each leaf MIME part on its own
once the whole message was found infected; if no single part is to blame, every leaf part
is removed.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from mailplane.config.settings import Settings
from mailplane.mail.message import MessageContext
from mailplane.mail.mime import leaf_parts, parse
from mailplane.notices.render import build_notice, local_time, render_template

REMOVED_NOTE = (
    "このパートはウイルスが検出されたため削除されました。\n"
    "This part was removed because a virus was found in it.\n"
)


def neutralise(raw: bytes, infected: frozenset[int]) -> tuple[EmailMessage, list[str]]:
    """The original with infected leaves replaced by a short note; names of what went."""
    message = parse(raw)
    leaves = leaf_parts(message)
    targets = infected or frozenset(range(len(leaves)))
    removed: list[str] = []
    for index, part in enumerate(leaves):
        if index not in targets:
            continue
        removed.append(part.get_filename() or part.get_content_type())
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
            "sender": ", ".join(ctx.header_from_addresses) or ctx.envelope_sender or "<>",
            "subject": ctx.subject or "",
            "signature": signature or "unknown",
            "removed_parts": ", ".join(removed) or "-",
        },
    )
    return build_notice(
        settings, to=recipient, subject=subject, body=body, now=now, attachment=original
    )
