"""System notices are written out by hand (no EmailMessage on the API's hot path): they
must still be well-formed MIME that any reader decodes to exactly the text we meant."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email import message_from_bytes

import pytest

from mailplane.config.settings import Settings
from mailplane.notices.render import build_notice

NOW = datetime(2026, 11, 23, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize("subject", [
    "Forwarding setting changed",
    "【メールプレーン】転送設定の変更のお知らせ / Forwarding setting changed " * 3,
    "A plain ASCII subject that is rather longer than one header line should ever be",
])
def test_a_notice_decodes_to_its_text_with_clean_headers(settings: Settings,
                                                           subject: str) -> None:
    body = "お客様各位\n\n転送設定が変更されました。\r\nWhen: 2026/11/23 14:06\n"
    raw = build_notice(settings, to="contact@example.jp", subject=subject, body=body,
                       now=NOW)
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and all(len(line) <= 78 for line in lines)
    message = message_from_bytes(raw, policy=email.policy.default)
    assert message.defects == []
    assert str(message["Subject"]) == subject
    assert message["From"].addresses[0].display_name == "システム管理者 / System Administrator"
    assert message["From"].addresses[0].addr_spec == f"postmaster@{settings.mx.hostname}"
    assert message["To"] == "contact@example.jp"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == NOW
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == body.replace("\r\n", "\n").replace("\n", "\r\n")
