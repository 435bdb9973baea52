"""``mx.bare_newline = reject``: the strict alternative refuses bare LF with 550 5.6.0."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories.mx import MxEnv


@pytest.fixture
def mx_settings_overrides() -> dict[str, Any]:
    return {"mx": {"bare_newline": "reject"}}


async def test_bare_lf_is_refused_when_configured_to(mx: MxEnv) -> None:
    payload = (b"EHLO old.example\r\nMAIL FROM:<alice@sender.example>\r\n"
               b"RCPT TO:<taro_1@e06.example.net>\r\nDATA\r\n"
               b"Subject: x\n\nbody\r\n.\r\nQUIT\r\n")
    replies = await mx.raw_session(payload)
    assert any(line.startswith("550 5.6.0") for line in replies)
    assert mx.inbox("taro_1@e06.example.net") == []
