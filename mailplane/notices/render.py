"""Mail that mailplane itself writes to a person (SPEC §9): rendered from a template under
``templates_dir`` (default ``mailplane/templates/``; Japanese first, English beside it),
UTF-8, MIME-encoded correctly, dates in the configured time zone, marked
``Auto-Submitted: auto-generated`` (RFC 3834 §5) so no auto-responder answers it.

Template files are ``string.Template`` text: a first line ``Subject: ...``, a blank line,
then the body.  Values are substituted as plain text (no code runs in a template).
"""

from __future__ import annotations

import base64
import email.policy
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from pathlib import Path
from string import Template

from mailplane.config.settings import Settings

SYSTEM_SENDER_NAME = "システム管理者 / System Administrator"


def system_sender(settings: Settings) -> str:
    """The administrator address system notices come from (postmaster, RFC 5321 §4.5.1)."""
    return f"postmaster@{settings.mx.hostname}"


def render_template(templates_dir: Path, name: str, values: dict[str, str]) -> tuple[str, str]:
    """Return (subject, body) of template ``name`` with ``values`` substituted."""
    text = (templates_dir / name).read_text(encoding="utf-8")
    rendered = Template(text).substitute(values)
    first, _, body = rendered.partition("\n")
    if not first.startswith("Subject:"):
        return "", rendered
    return first[len("Subject:") :].strip(), body.lstrip("\n")


def render_fragment(templates_dir: Path, name: str, values: dict[str, str]) -> str:
    text = (templates_dir / name).read_text(encoding="utf-8")
    return Template(text).substitute(values)


def local_time(settings: Settings, moment: datetime) -> str:
    return moment.astimezone(settings.tz).strftime("%Y/%m/%d %H:%M")


def build_notice(
    settings: Settings,
    *,
    to: str,
    subject: str,
    body: str,
    now: datetime,
    attachment: EmailMessage | None = None,
) -> bytes:
    """Serialise a notice with CRLF line endings, ready for the Maildir writer."""
    if attachment is None:
        return _plain_notice(settings, to=to, subject=subject, body=body, now=now)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = f"{SYSTEM_SENDER_NAME} <{system_sender(settings)}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(now.astimezone(settings.tz))
    message["Message-ID"] = make_msgid(domain=settings.mx.hostname)
    message["Auto-Submitted"] = "auto-generated"
    message["MIME-Version"] = "1.0"
    message.set_content(body, charset="utf-8")
    if attachment is not None:
        message.add_attachment(attachment, disposition="attachment")
    return message.as_bytes(policy=email.policy.SMTP)


def _plain_notice(settings: Settings, *, to: str, subject: str, body: str,
                  now: datetime) -> bytes:
    """A single text/plain UTF-8 part, written out directly: RFC 2047 encoded-words for
    the Japanese From name and Subject (encoded once per distinct text), a base64 body,
    CRLF lines — what the ``EmailMessage`` path produces, at a fraction of the cost: every
    forwarding or password change through the API builds one inside its request
    (docs/performance.md, API).  ``to`` is a validated address (no CR/LF)."""
    crlf_body = body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    encoded = base64.encodebytes(crlf_body).replace(b"\n", b"\r\n")
    head = (
        f"From: {_encoded_word(SYSTEM_SENDER_NAME, 'From')}\r\n <{system_sender(settings)}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {_encoded_word(subject, 'Subject')}\r\n"
        f"Date: {format_datetime(now.astimezone(settings.tz))}\r\n"
        f"Message-ID: {make_msgid(domain=settings.mx.hostname)}\r\n"
        "Auto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    )
    return head.encode("ascii") + encoded


@lru_cache(maxsize=256)
def _encoded_word(text: str, header_name: str) -> str:
    """``text`` as a header value: itself when it is printable ASCII, else RFC 2047
    encoded-words folded with CRLF + space (RFC 5322 §2.2.3)."""
    if text.isascii() and text.isprintable() and len(text) <= 70:
        return text
    return Header(text, "utf-8", header_name=header_name).encode(linesep="\r\n")
