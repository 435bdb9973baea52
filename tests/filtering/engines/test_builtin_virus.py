"""SPEC §3: the built-in EICAR-only scanner, the embedded default for demos and tests."""

from __future__ import annotations

from mailplane.filters.engines.builtin_virus import EICAR_SIGNATURE, BuiltinVirusEngine
from tests.factories.daemons import EICAR
from tests.factories.messages import (
    eicar_base64_attachment,
    eicar_quoted_printable_attachment,
    ordinary_message,
    with_attachment,
)


async def test_eicar_in_raw_bytes_is_infected() -> None:
    result = await BuiltinVirusEngine().scan(EICAR)
    assert result.infected
    assert result.signature == EICAR_SIGNATURE


async def test_eicar_in_base64_attachment_is_infected() -> None:
    result = await BuiltinVirusEngine().scan(eicar_base64_attachment())
    assert result.infected
    assert result.signature == EICAR_SIGNATURE


async def test_eicar_in_quoted_printable_attachment_is_infected() -> None:
    result = await BuiltinVirusEngine().scan(eicar_quoted_printable_attachment())
    assert result.infected


async def test_eicar_in_large_message_is_found_off_the_event_loop() -> None:
    padding = b"x" * (200 * 1024)
    result = await BuiltinVirusEngine().scan(with_attachment(padding + EICAR))
    assert result.infected


async def test_ordinary_message_is_clean() -> None:
    result = await BuiltinVirusEngine().scan(ordinary_message())
    assert not result.infected
    assert result.signature == ""


async def test_clean_base64_attachment_is_clean() -> None:
    result = await BuiltinVirusEngine().scan(with_attachment(b"\x00\x01 harmless bytes"))
    assert not result.infected


async def test_garbage_that_is_not_mail_is_clean_not_an_error() -> None:
    data = b"\xff\xfe Content-Transfer-Encoding: base64\n\n!!!not base64!!!"
    result = await BuiltinVirusEngine().scan(data)
    assert not result.infected
