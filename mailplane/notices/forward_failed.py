"""The notice that comes with a forward returned to its inbox (SPEC §5): keep-copy was
OFF, the forward failed for good, and the message is stored in the mailbox after all so
nothing is lost — the customer is told why it is there and which destination failed.

Stored as it is in the address's own inbox (like the quota notice), never through its
pipeline: forwarded again, it would fail again at the same destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mailplane.config.settings import Settings
from mailplane.mail.message import decode_header_text, parse_headers, unfold
from mailplane.mail.trace import header_safe
from mailplane.notices.render import build_notice, render_template

#: Longest sender or subject text quoted in the notice.
QUOTED_CHARS = 200


def forward_failed_notice(settings: Settings, *, address: str, message: bytes,
                          failures: Sequence[tuple[str, str]], now: datetime) -> bytes:
    """The notice for ``message`` (the forwarded copy) whose ``failures`` — (destination,
    diagnostic) — failed for good."""
    headers = parse_headers(message)
    sender = header_safe(decode_header_text(unfold(str(headers.get("From", "")))),
                         QUOTED_CHARS)
    subject = header_safe(decode_header_text(unfold(str(headers.get("Subject", "")))),
                          QUOTED_CHARS)
    lines = [f"    <{header_safe(d, 320)}>: {header_safe(why, 300)}" for d, why in failures]
    listed = "\n".join(lines)
    subject_line, body = render_template(settings.templates_dir,
                                         "forward_failed_notice.txt", {
        "address": address, "sender": sender or "-", "subject": subject or "-",
        "failures_ja": listed, "failures_en": listed,
    })
    return build_notice(settings, to=address, subject=subject_line, body=body, now=now)
