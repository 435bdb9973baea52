"""SPEC §4: rspamd's /checkv2 behind the spam hook (unit test against a tiny local HTTP server).

rspamd itself is installable on Debian bookworm (package ``rspamd``) but needs Redis and a
configuration to be useful; the protocol is plain HTTP + JSON, so one module's unit test
with a fake server on a loopback port is enough here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mailplane.config.sections import SpamConfig
from mailplane.filters.engines.base import ScannerUnavailable
from mailplane.filters.engines.rspamd import RspamdEngine
from tests.conftest import free_port
from tests.factories.messages import gtube_message, ordinary_message


@dataclass
class FakeRspamd:
    url: str = ""
    status: int = 200
    answer: Any = field(default_factory=dict)
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def rspamd() -> Iterator[FakeRspamd]:
    fake = FakeRspamd()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            fake.requests.append((self.path, dict(self.headers.items()), body))
            time.sleep(fake.delay)
            payload = json.dumps(fake.answer).encode()
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def _engine(fake: FakeRspamd, **settings: Any) -> RspamdEngine:
    return RspamdEngine(SpamConfig(engine="rspamd", rspamd_url=fake.url + "/", **settings))


SPAM_ANSWER = {
    "action": "reject",
    "score": 1012.5,
    "required_score": 15.0,
    "symbols": {
        "GTUBE": {"name": "GTUBE", "score": 1000.0},
        "MISSING_DATE": {"name": "MISSING_DATE", "score": 1.0},
    },
}


async def test_rspamd_score_and_symbols_make_the_verdict(rspamd: FakeRspamd) -> None:
    rspamd.answer = SPAM_ANSWER
    engine = _engine(rspamd)
    try:
        result = await engine.check(gtube_message(), client_ip="192.0.2.7", helo="mx.example.org",
                                    mail_from="alice@sender.example")
    finally:
        await engine.aclose()
    assert result.is_spam
    assert result.score == 1012.5
    assert result.rules == ("GTUBE", "MISSING_DATE")
    path, headers, body = rspamd.requests[0]
    assert path == "/checkv2"
    assert headers["IP"] == "192.0.2.7"
    assert headers["Helo"] == "mx.example.org"
    assert headers["From"] == "alice@sender.example"  # the envelope sender, for its SPF
    assert body == gtube_message()


async def test_our_threshold_wins_over_rspamds_required_score(rspamd: FakeRspamd) -> None:
    rspamd.answer = {"score": 6.0, "required_score": 15.0, "symbols": {}}
    result = await _engine(rspamd, threshold=5.0).check(ordinary_message())
    assert result.is_spam
    assert result.threshold == 5.0


async def test_ip_and_helo_headers_are_left_out_when_unknown(rspamd: FakeRspamd) -> None:
    rspamd.answer = {"score": 0.1, "symbols": {}}
    result = await _engine(rspamd).check(ordinary_message())
    assert not result.is_spam
    headers = rspamd.requests[0][1]
    assert "IP" not in headers
    assert "Helo" not in headers
    assert "From" not in headers


async def test_http_error_status_is_scanner_unavailable(rspamd: FakeRspamd) -> None:
    rspamd.status = 500
    with pytest.raises(ScannerUnavailable, match="HTTP 500"):
        await _engine(rspamd).check(ordinary_message())


async def test_answer_without_score_is_scanner_unavailable(rspamd: FakeRspamd) -> None:
    rspamd.answer = {"error": "bad message"}
    with pytest.raises(ScannerUnavailable, match="without a score"):
        await _engine(rspamd).check(ordinary_message())


async def test_slow_rspamd_is_scanner_unavailable_after_the_timeout(rspamd: FakeRspamd) -> None:
    rspamd.delay = 2.0
    with pytest.raises(ScannerUnavailable, match=r"did not answer within 0\.3 s"):
        await _engine(rspamd, timeout_seconds=0.3).check(ordinary_message())


async def test_nothing_listening_is_scanner_unavailable() -> None:
    engine = RspamdEngine(SpamConfig(rspamd_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ScannerUnavailable, match="unreachable"):
        await engine.check(ordinary_message())
