"""Byte-level header edits of a delivered copy: trace headers and the ``[spam] `` tag.

The message is never re-serialised by the email package (that would re-fold and re-encode
what the sender wrote); we only insert or rewrite whole header fields in the raw bytes.
"""

from __future__ import annotations

from mailplane.mail.message import decode_header_text, unfold

SPAM_PREFIX = "[spam] "
#: Headers a sender must not be able to forge into our trace (we write our own).
OWN_TRACE_HEADERS = ("x-mailplane-verdict", "return-path", "delivered-to")


def split_message(raw: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its folded lines and final CRLF) and the rest (``CRLF`` +
    body, or empty)."""
    if raw.startswith(b"\r\n"):
        return [], raw
    end = raw.find(b"\r\n\r\n")
    if end == -1:
        head, rest = raw, b""
        if not head.endswith(b"\r\n"):
            head += b"\r\n"
    else:
        head, rest = raw[: end + 2], raw[end + 2 :]
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields, rest


def field_name(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def _field_value(field: bytes) -> bytes:
    return field.split(b":", 1)[1] if b":" in field else b""


def tagged_subject_field(fields: list[bytes]) -> list[bytes]:
    """Prefix ``[spam] `` once (SPEC §4).  Prefixing the raw value keeps RFC 2047
    encoded-words intact: ordinary text followed by whitespace and an encoded-word is
    valid (RFC 2047 §5(1)), and the decoded result reads ``[spam] <subject>``."""
    for index, field in enumerate(fields):
        if field_name(field) != "subject":
            continue
        raw_value = _field_value(field)
        decoded = decode_header_text(unfold(raw_value.decode("utf-8", "surrogateescape")))
        if decoded.strip().lower().startswith(SPAM_PREFIX.strip()):
            return fields
        value = raw_value.lstrip(b" \t\r\n")
        result = list(fields)
        result[index] = b"Subject: " + SPAM_PREFIX.encode() + value
        return result
    return [*fields, b"Subject: " + SPAM_PREFIX.strip().encode() + b"\r\n"]


def header_line(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode("utf-8", "surrogateescape")


def delivered_copy(
    raw: bytes, *, trace: list[tuple[str, str]], tag_subject: bool = False
) -> bytes:
    """The bytes stored for one recipient: our trace headers on top, forged ones removed."""
    fields, rest = split_message(raw)
    fields = [f for f in fields if field_name(f) not in OWN_TRACE_HEADERS]
    if tag_subject:
        fields = tagged_subject_field(fields)
    top = b"".join(header_line(name, value) for name, value in trace)
    if not rest:
        rest = b"\r\n"
    return top + b"".join(fields) + rest
