"""Failures answer 451 with nothing stored (SPEC §3 on_error, SPEC §8 "nothing lost")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mailplane.config.settings import Settings
from mailplane.filters.engines.base import (
    ScannerUnavailable,
    SpamEngine,
    VirusEngine,
    VirusScanResult,
)
from mailplane.filters.engines.factory import build_spam_engine, build_virus_engine
from tests.factories.daemons import ClamdDaemon, start_clamd
from tests.factories.mx import GTUBE, EngineFactory, MxEnv, make_message

TARO = "taro_1@e06.example.net"


class DownScanner:
    """A scanner whose daemon is down (unit-level fake of the engine protocol)."""

    name = "down"

    def __init__(self) -> None:
        self.calls = 0

    async def scan(self, data: bytes) -> VirusScanResult:
        self.calls += 1
        raise ScannerUnavailable("connection refused")

    async def aclose(self) -> None:
        return None


def assert_nothing_stored(mx: MxEnv, address: str) -> None:
    assert mx.inbox(address) == []
    assert mx.tmp_files(address) == []
    assert mx.quarantine_files(address) == []


class TestScannerDown:
    @pytest.fixture
    def engines(self) -> EngineFactory:
        def build(settings: Settings) -> tuple[VirusEngine | None, SpamEngine | None]:
            return DownScanner(), build_spam_engine(settings.spam)

        return build

    async def test_scanner_down_is_451_with_nothing_stored(self, mx: MxEnv) -> None:
        code, text_ = await mx.send_expect_error(make_message())
        assert (code, text_.split()[0]) == (451, "4.3.0")
        assert_nothing_stored(mx, TARO)

    async def test_scanner_down_does_not_matter_when_nobody_wants_a_scan(
        self, mx: MxEnv
    ) -> None:
        mx.update_address(TARO, virus_check=False)
        assert await mx.send(make_message()) == {}
        assert len(mx.inbox(TARO)) == 1


class TestScannerDownAccept:
    @pytest.fixture
    def mx_settings_overrides(self) -> dict[str, Any]:
        return {"virus": {"on_error": "accept"}}

    @pytest.fixture
    def engines(self) -> EngineFactory:
        def build(settings: Settings) -> tuple[VirusEngine | None, SpamEngine | None]:
            return DownScanner(), build_spam_engine(settings.spam)

        return build

    async def test_on_error_accept_delivers_and_says_unscanned(self, mx: MxEnv) -> None:
        assert await mx.send(make_message()) == {}
        [stored] = mx.inbox(TARO)
        assert b"virus=unscanned" in stored


class CountingScanner:
    def __init__(self, inner: VirusEngine) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls = 0
        self.started = asyncio.Event()

    async def scan(self, data: bytes) -> VirusScanResult:
        self.calls += 1
        self.started.set()
        return await self.inner.scan(data)

    async def aclose(self) -> None:
        await self.inner.aclose()


class TestScanOnce:
    scanner: CountingScanner

    @pytest.fixture
    def engines(self) -> EngineFactory:
        def build(settings: Settings) -> tuple[VirusEngine | None, SpamEngine | None]:
            self.scanner = CountingScanner(build_virus_engine(settings.virus))
            return self.scanner, build_spam_engine(settings.spam)

        return build

    async def test_message_is_scanned_once_for_several_recipients(self, mx: MxEnv) -> None:
        mx.add_address("hanako@e06.example.net")
        mx.add_address("jiro_2@e07.example.net")
        await mx.send(make_message(), rcpt_tos=[TARO, "hanako@e06.example.net",
                                                "jiro_2@e07.example.net"])
        assert self.scanner.calls == 1


class TestClamdKilledMidScan:
    daemon: ClamdDaemon
    scanner: CountingScanner

    @pytest.fixture
    def mx_settings_overrides(self, tmp_path: Path) -> dict[str, Any]:
        self.daemon = start_clamd(tmp_path / "clamd")
        return {"virus": self.daemon.virus_settings(timeout_seconds=20)}

    @pytest.fixture
    def engines(self) -> EngineFactory:
        def build(settings: Settings) -> tuple[VirusEngine | None, SpamEngine | None]:
            self.scanner = CountingScanner(build_virus_engine(settings.virus))
            return self.scanner, build_spam_engine(settings.spam)

        return build

    async def test_clamd_killed_mid_scan_is_451_with_nothing_stored(self, mx: MxEnv) -> None:
        try:
            assert await mx.send(make_message(subject="before")) == {}
            assert len(mx.inbox(TARO)) == 1
            self.daemon.pause()  # the next scan hangs inside clamd ...
            self.scanner.started.clear()
            sending = asyncio.create_task(mx.send_expect_error(make_message(subject="during")))
            await self.scanner.started.wait()
            await asyncio.to_thread(self.daemon.kill)  # ... and clamd dies under it
            code, text_ = await sending
            assert (code, text_.split()[0]) == (451, "4.3.0")
            assert len(mx.inbox(TARO)) == 1
            assert mx.tmp_files(TARO) == []
        finally:
            self.daemon.stop()


async def test_failed_db_commit_removes_every_file_of_the_transaction(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=True, spam_quarantine=True)
    mx.add_address("hanako@e06.example.net")
    with mx.session_factory() as session:
        session.execute(text("DROP TABLE quarantine_items"))
        session.commit()
    message = make_message(body=GTUBE.decode() + "\r\n")
    code, _ = await mx.send_expect_error(message, rcpt_tos=[TARO, "hanako@e06.example.net"])
    assert code == 451
    assert_nothing_stored(mx, TARO)
    assert_nothing_stored(mx, "hanako@e06.example.net")
