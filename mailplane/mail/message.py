"""MessageContext: one inbound message as every filter sees it (DESIGN "A message through
the MX service").

Built once per DATA.  Headers are parsed lazily and only once; the body is parsed only where
a filter (or the virus report) needs it, through the bounded :mod:`mailplane.mail.mime`.
Header values are read from the *raw* header lines (``raw_items``) and decoded here, so a
malformed header never raises inside a filter.
"""

from __future__ import annotations

import email.policy
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from functools import cached_property

from mailplane.mail.auth_results import AuthResults

#: compat32 for the header view: values come back as the raw strings, which is all the
#: filters need (they decode themselves), at a fifth of the cost of policy.default's header
#: objects — a measurable share of MX CPU (docs/performance.md).
_HEADER_PARSER = BytesHeaderParser(policy=email.policy.compat32)


def has_bare_line_ending(data: bytes) -> bool:
    """True if ``data`` holds a CR not followed by LF or an LF not preceded by CR.

    RFC 5321 §2.3.8 allows CRLF only; bare ones are how SMTP smuggling hides a second
    message (``\\n.\\n``, ``\\n.\\r\\n``, ``\\r.\\r``) that a downstream MTA would split off.
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


_BARE_LF = re.compile(rb"(?<!\r)\n")


def normalise_bare_lf(data: bytes) -> bytes:
    """Every LF not preceded by CR made CRLF (what an MX that accepts bare LF stores);
    ``data`` itself when it has none."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF.sub(b"\r\n", data)


def header_block(raw: bytes) -> bytes:
    """A prefix of ``raw`` that holds the whole header section (RFC 5322 §2.1).

    The section ends at the first empty line; ``\n\r\n`` or ``\n\n`` is always one,
    whatever the line endings, so cutting just after the first of them never cuts a header
    — at worst a byte of body comes along, which the parser ignores.
    """
    crlf = raw.find(b"\n\r\n")
    # A bare "\n\n" can only matter before the first "\n\r\n": look no further (a CRLF
    # message has none, and searching all of its body for one was a pass over the data).
    bare = raw.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(raw))
    end = bare if bare >= 0 else crlf
    return raw[: end + 3] if end >= 0 else raw


def parse_headers(raw: bytes) -> Message:
    """The header section of ``raw`` as a compat32 ``Message`` (raw, undecoded values).

    Only the header block is handed to the parser: even in headers-only mode it would
    decode and split every body line into its payload, which nobody reads here.
    """
    return _HEADER_PARSER.parsebytes(header_block(raw))


def decode_header_text(raw: str) -> str:
    """RFC 2047 decode, tolerant of broken encoded-words (falls back to the raw text).

    Text without ``=?`` holds no encoded-word and decodes to itself (tested), so the
    common case skips building a ``Header``.
    """
    if "=?" not in raw:
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw


def unfold(raw: str) -> str:
    return raw.replace("\r\n", "").replace("\n", "").replace("\r", "")


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only (SPEC §4: subjects are case-insensitive for ASCII)."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalise_subject(text: str) -> str:
    """NFKC (half-width katakana → full width) then ASCII case folding (SPEC §4)."""
    return ascii_lower(unicodedata.normalize("NFKC", text))


@dataclass
class MessageContext:
    """Envelope, peer and raw bytes of one message; parsed views are cached properties."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    received_at: datetime
    peer_ip: str | None = None
    helo: str | None = None
    queue_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    #: SPF/DKIM/DMARC/ARC as the MX evaluated them; None when the mail did not come from
    #: the Internet (submission, the queue's local transport): see ``auth_results``.
    auth: AuthResults | None = None

    @cached_property
    def headers(self) -> Message:
        """Headers only (the body is not parsed); values are raw, undecoded strings."""
        return parse_headers(self.raw)

    def raw_header(self, name: str) -> list[str]:
        """Every raw (undecoded, unfolded) value of header ``name``."""
        wanted = name.lower()
        return [
            unfold(str(value)).strip()
            for key, value in self.headers.raw_items()
            if key.lower() == wanted
        ]

    @cached_property
    def header_from_raw(self) -> str | None:
        """The raw From value, or None when there is no From header at all."""
        values = self.raw_header("From")
        return values[0] if values else None

    @cached_property
    def header_from_addresses(self) -> tuple[str, ...]:
        """Lower-cased addresses in the header From (for deny/allow matching)."""
        return self.header_addresses("From")

    def header_addresses(self, name: str) -> tuple[str, ...]:
        """Lower-cased addresses in every header ``name`` (those with an ``@``)."""
        values = self.raw_header(name)
        pairs = getaddresses([decode_header_text(v) for v in values])
        return tuple(addr.strip().lower() for _name, addr in pairs if addr and "@" in addr)

    @cached_property
    def subject_raw(self) -> str | None:
        values = self.raw_header("Subject")
        return values[0] if values else None

    @cached_property
    def subject(self) -> str | None:
        """The MIME-decoded Subject, or None when there is no Subject header."""
        raw = self.subject_raw
        return None if raw is None else decode_header_text(raw)

    @property
    def envelope_sender(self) -> str:
        """Lower-cased envelope sender; empty for the null sender (a bounce)."""
        return self.mail_from.strip().strip("<>").lower()

    @cached_property
    def sender_addresses(self) -> tuple[str, ...]:
        """Addresses the deny and allow lists match against: header From and envelope."""
        found = list(self.header_from_addresses)
        if self.envelope_sender and self.envelope_sender not in found:
            found.append(self.envelope_sender)
        return tuple(found)
