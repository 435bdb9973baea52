"""SPEC §4: SpamAssassin spamd behind the spam hook, judged by OUR threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailplane.config.sections import SpamConfig
from mailplane.filters.engines.base import ScannerUnavailable
from mailplane.filters.engines.spamd import SpamdEngine
from tests.conftest import free_port
from tests.factories.daemons import SpamdDaemon, start_spamd
from tests.factories.messages import gtube_message, ordinary_message

pytestmark = pytest.mark.daemon


def _engine(daemon: SpamdDaemon, **overrides: object) -> SpamdEngine:
    return SpamdEngine(SpamConfig(**{**daemon.spam_settings(), **overrides}))


async def test_spamd_says_gtube_is_spam_with_its_rule(spamd_daemon: SpamdDaemon) -> None:
    result = await _engine(spamd_daemon).check(gtube_message())
    assert result.is_spam
    assert result.score >= 1000
    assert "GTUBE" in result.rules
    assert result.threshold == 5.0


async def test_spamd_says_ordinary_message_is_not_spam(spamd_daemon: SpamdDaemon) -> None:
    result = await _engine(spamd_daemon).check(ordinary_message(), client_ip="192.0.2.1")
    assert not result.is_spam
    assert result.score < 5.0


async def test_our_threshold_wins_over_spamds(spamd_daemon: SpamdDaemon) -> None:
    result = await _engine(spamd_daemon, threshold=-100.0).check(ordinary_message())
    assert result.is_spam
    assert result.threshold == -100.0


async def test_spamd_ping_answers(spamd_daemon: SpamdDaemon) -> None:
    await _engine(spamd_daemon).ping()


async def test_oversized_message_is_not_sent_to_spamd() -> None:
    engine = SpamdEngine(SpamConfig(spamd_port=free_port()), max_size=1024)
    result = await engine.check(ordinary_message(body="x" * 2048))
    assert result.rules == ("TOO_BIG_NOT_SCANNED",)
    assert not result.is_spam


async def test_nothing_listening_is_scanner_unavailable() -> None:
    engine = SpamdEngine(SpamConfig(spamd_port=free_port(), timeout_seconds=2.0))
    with pytest.raises(ScannerUnavailable, match=r"spamd at 127\.0\.0\.1:"):
        await engine.check(gtube_message())
    with pytest.raises(ScannerUnavailable):
        await engine.ping()


async def test_killed_spamd_is_scanner_unavailable(tmp_path: Path) -> None:
    daemon = start_spamd(tmp_path / "spamd")
    try:
        engine = _engine(daemon, timeout_seconds=2.0)
        assert (await engine.check(gtube_message())).is_spam
        daemon.kill()
        with pytest.raises(ScannerUnavailable):
            await engine.check(gtube_message())
    finally:
        daemon.stop()


async def test_hung_spamd_is_scanner_unavailable_within_the_timeout(tmp_path: Path) -> None:
    """A spamd that accepts but never answers (SIGSTOP) must not hold the message: the
    engine gives up at its timeout and the MX applies spam.on_error."""
    daemon = start_spamd(tmp_path / "spamd")
    try:
        engine = _engine(daemon, timeout_seconds=1.0)
        assert (await engine.check(gtube_message())).is_spam
        daemon.pause()
        with pytest.raises(ScannerUnavailable):
            await engine.check(gtube_message())
    finally:
        daemon.resume()
        daemon.stop()
