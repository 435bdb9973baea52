"""Trace header fields mailplane writes (RFC 5321 §4.4, RFC 3848, RFC 6531), built safely
from any client input: a value a client chose (its HELO name) is reduced to printable ASCII,
so a CR, LF or NUL can never start a header line of its own in a stored or forwarded copy.
A ``Received`` field never names a login (SPEC §8b): whether the client authenticated is
said by the ``with`` keyword alone."""

from __future__ import annotations

from datetime import datetime, tzinfo
from email.utils import format_datetime

#: Longest client-chosen text copied into a header (a HELO name is a domain: ≤ 255).
MAX_CLIENT_TEXT = 255


def printable(text: str, limit: int = MAX_CLIENT_TEXT) -> str:
    """Client-supplied text made safe for a header field or a reply: every character
    outside printable ASCII (controls, CR, LF, NUL, DEL, non-ASCII) becomes ``?``."""
    return "".join(c if " " < c < "\x7f" else "?" for c in text[:limit])


#: Characters that could end or fold a header line: C0 and C1 controls and DEL (Unicode
#: category Cc), U+2028 and U+2029 (Zl, Zp) — each to ``?``.
_UNSAFE_IN_HEADER = {code: "?" for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)}


def header_safe(text: str, limit: int = 998) -> str:
    """Text for a header value (or a notice's text): characters that could end or fold a
    header line (C0/C1 controls, DEL, U+2028/U+2029 — ``str.splitlines`` breaks on all of
    them) become ``?``; other Unicode is kept (RFC 6532).  Raw 8-bit header bytes (read
    with ``surrogateescape``) are decoded as UTF-8, bytes that are not UTF-8 become U+FFFD:
    nothing left can fail to encode."""
    return _without_surrogates(text[:limit]).translate(_UNSAFE_IN_HEADER)


def _without_surrogates(text: str) -> str:
    if text.isascii() or not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return "".join("?" if "\ud800" <= c <= "\udfff" else c for c in text)


def local_date(moment: datetime, tz: tzinfo) -> str:
    """An RFC 5322 date in the configured zone (Asia/Tokyo by default)."""
    return format_datetime(moment.astimezone(tz))


def transmission_type(*, extended: bool, tls: bool, authenticated: bool,
                      smtputf8: bool) -> str:
    """The ``with`` keyword of a ``Received`` field: ``SMTP`` after HELO; after EHLO
    ``ESMTP`` plus ``S`` over TLS and ``A`` once authenticated (RFC 3848: ESMTPS, ESMTPA,
    ESMTPSA), or ``UTF8SMTP…`` the same way for a transaction that asked for SMTPUTF8
    (RFC 6531 §3.7.3: UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA)."""
    if not extended:
        return "SMTP"
    return (("UTF8SMTP" if smtputf8 else "ESMTP") + ("S" if tls else "")
            + ("A" if authenticated else ""))


def received(*, helo: str | None, peer_ip: str | None, hostname: str, protocol: str,
             queue_id: str, recipient: str | None, at: datetime, tz: tzinfo) -> str:
    """This hop's ``Received`` value, folded with CRLF + tab.  ``protocol`` is a
    :func:`transmission_type` keyword, or ``LOCAL`` for the queue's delivery to a hosted
    address."""
    lines = [f"from {printable(helo or 'unknown')} ([{printable(peer_ip or 'unknown')}])"]
    by = f"by {hostname} (mailplane) with {protocol} id {queue_id}"
    if recipient:
        lines.append(by)
        lines.append(f"for <{header_safe(recipient, 320)}>; {local_date(at, tz)}")
    else:
        lines.append(by + ";")
        lines.append(local_date(at, tz))
    return "\r\n\t".join(lines)


def delivery_trace(*, return_path: str, recipient: str, verdict: str,
                   received_value: str) -> list[tuple[str, str]]:
    """The fields on top of a copy stored for ``recipient`` (``mail.rewrite``
    removes sender-supplied fields of these names first)."""
    return [
        ("Return-Path", f"<{header_safe(return_path, 320)}>"),
        ("Delivered-To", header_safe(recipient, 320)),
        ("X-Mailplane-Verdict", header_safe(verdict)),
        ("Received", received_value),
    ]
