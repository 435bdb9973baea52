"""Our trace header fields are safe whatever a client sends (RFC 5321 §4.4; issue 15)."""

from __future__ import annotations

import sys
import unicodedata
from datetime import UTC, datetime

from mailplane.mail.trace import header_safe, printable, received


def test_header_safe_replaces_exactly_what_can_end_or_fold_a_header_line() -> None:
    """Every code point: controls (C0, DEL, C1) and the Unicode line/paragraph separators
    become "?", everything else is kept."""
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1)
                         if not 0xD800 <= c <= 0xDFFF)
    expected = "".join("?" if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
                       for c in everything)
    assert header_safe(everything, limit=len(everything)) == expected


def test_a_helo_with_cr_lf_or_nul_cannot_start_a_header_line() -> None:
    value = received(helo="evil\rX-Injected: 1\n\x00", peer_ip="192.0.2.1",
                     hostname="mx.example.net", protocol="ESMTP", queue_id="q1",
                     recipient="taro@e06.example.net", at=datetime(2026, 11, 23, tzinfo=UTC),
                     tz=UTC)
    assert value.count("\r\n") == 2 and "\r\n\t" in value
    assert all(line.startswith(("from ", "\tby ", "\tfor ")) for line in value.split("\r\n"))
    assert printable("évil\x7f ") == "?vil??"  # a HELO name is printable ASCII
