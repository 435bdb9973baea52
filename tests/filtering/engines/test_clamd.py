"""SPEC §3: clamd over its socket (INSTREAM) is the production scanner; down ≠ clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailplane.config.sections import VirusConfig
from mailplane.filters.engines.base import ScannerUnavailable
from mailplane.filters.engines.clamd import ClamdEngine, parse_instream_reply
from tests.factories.daemons import CLAMD_EICAR_SIGNATURE, EICAR, ClamdDaemon, start_clamd
from tests.factories.messages import (
    eicar_base64_attachment,
    eicar_quoted_printable_attachment,
    ordinary_message,
)

pytestmark = pytest.mark.daemon

TRANSPORTS = ["unix", "tcp"]


def _engine(daemon: ClamdDaemon, transport: str, timeout: float = 10.0) -> ClamdEngine:
    return ClamdEngine(
        VirusConfig(**daemon.virus_settings(tcp=transport == "tcp", timeout_seconds=timeout))
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_clamd_detects_eicar_in_raw_bytes(clamd_daemon: ClamdDaemon, transport: str) -> None:
    result = await _engine(clamd_daemon, transport).scan(EICAR)
    assert result.infected
    assert result.signature == CLAMD_EICAR_SIGNATURE


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_clamd_detects_eicar_in_base64_mime_attachment(
    clamd_daemon: ClamdDaemon, transport: str
) -> None:
    result = await _engine(clamd_daemon, transport).scan(eicar_base64_attachment())
    assert result.infected
    assert result.signature == CLAMD_EICAR_SIGNATURE


async def test_clamd_detects_eicar_in_quoted_printable_attachment(
    clamd_daemon: ClamdDaemon,
) -> None:
    result = await _engine(clamd_daemon, "unix").scan(eicar_quoted_printable_attachment())
    assert result.infected


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_clamd_says_clean_message_is_ok(clamd_daemon: ClamdDaemon, transport: str) -> None:
    result = await _engine(clamd_daemon, transport).scan(ordinary_message())
    assert not result.infected


async def test_clamd_streams_data_larger_than_one_chunk(clamd_daemon: ClamdDaemon) -> None:
    data = b"A" * (300 * 1024) + EICAR
    result = await _engine(clamd_daemon, "unix").scan(data)
    assert result.infected


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_clamd_ping_answers(clamd_daemon: ClamdDaemon, transport: str) -> None:
    await _engine(clamd_daemon, transport).ping()


async def test_killed_clamd_is_scanner_unavailable_on_both_transports(tmp_path: Path) -> None:
    daemon = start_clamd(tmp_path / "clamd")
    try:
        unix, tcp = _engine(daemon, "unix", 2.0), _engine(daemon, "tcp", 2.0)
        assert not (await unix.scan(ordinary_message())).infected
        daemon.kill()
        for engine in (unix, tcp):
            with pytest.raises(ScannerUnavailable, match="unreachable"):
                await engine.scan(EICAR)
            with pytest.raises(ScannerUnavailable):
                await engine.ping()
    finally:
        daemon.stop()


async def test_hung_clamd_is_scanner_unavailable_after_the_timeout(tmp_path: Path) -> None:
    daemon = start_clamd(tmp_path / "clamd")
    try:
        daemon.pause()
        with pytest.raises(ScannerUnavailable, match=r"did not answer within 0\.5 s"):
            await _engine(daemon, "tcp", timeout=0.5).scan(EICAR)
    finally:
        daemon.resume()
        daemon.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stream_over_clamd_size_limit_is_scanner_unavailable(
    tmp_path: Path, transport: str
) -> None:
    daemon = start_clamd(tmp_path / "clamd", stream_max_length="100K")
    try:
        with pytest.raises(ScannerUnavailable, match="size limit"):
            await _engine(daemon, transport).scan(b"B" * (1024 * 1024))
    finally:
        daemon.stop()


def test_unexpected_reply_is_scanner_unavailable() -> None:
    with pytest.raises(ScannerUnavailable, match="unexpected reply"):
        parse_instream_reply("UNKNOWN COMMAND")
