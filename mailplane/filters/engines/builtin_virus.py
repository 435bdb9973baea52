"""Built-in EICAR-only virus engine: the embedded default for demos and tests (SPEC §3).

It knows exactly one "virus", the EICAR anti-virus test file, so an installation without
clamd can still show the whole virus path (report mail, neutralised original) end to end.
EICAR normally travels as a mail attachment, i.e. base64 or quoted-printable encoded, so
the raw bytes are searched first and, only when the data looks like MIME with encoded
parts, the message is parsed and every decoded leaf payload is searched as well.
"""

from __future__ import annotations

import asyncio
import re
from email.policy import compat32

from mailplane.filters.engines.base import VirusScanResult
from mailplane.mail.mime import MimeTooComplex, leaf_parts, parse

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Eicar-Test-Signature"

#: Only data that declares an encoded part can hide EICAR from a plain byte search.
#: Matched on the lower-cased bytes: ``bytes.lower`` and a case-sensitive search with a
#: literal prefix are ten times faster than one IGNORECASE search over the message.
_ENCODED_PART = re.compile(rb"content-transfer-encoding:[ \t]*(?:base64|quoted-printable)")
#: Above this size the MIME walk runs in a thread so the event loop stays free.
_INLINE_PARSE_LIMIT = 64 * 1024


class BuiltinVirusEngine:
    """Detects the EICAR test string in raw bytes and in decoded MIME parts."""

    name = "builtin"

    async def scan(self, data: bytes) -> VirusScanResult:
        if EICAR in data:
            return VirusScanResult(infected=True, signature=EICAR_SIGNATURE)
        if not _ENCODED_PART.search(data.lower()):
            return VirusScanResult(infected=False)
        if len(data) <= _INLINE_PARSE_LIMIT:
            found = _eicar_in_mime_parts(data)
        else:
            found = await asyncio.to_thread(_eicar_in_mime_parts, data)
        if found:
            return VirusScanResult(infected=True, signature=EICAR_SIGNATURE)
        return VirusScanResult(infected=False)

    async def aclose(self) -> None:
        return None


def _eicar_in_mime_parts(data: bytes) -> bool:
    """EICAR in a decoded leaf; a message beyond the MIME bounds (refused at DATA, so
    only seen from other paths) is judged by the raw search alone."""
    try:
        message = parse(data, policy=compat32)
    except MimeTooComplex:
        return False
    for part in leaf_parts(message):
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and EICAR in payload:
            return True
    return False
