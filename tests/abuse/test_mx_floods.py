"""MX under floods (issue 15, SPEC §8a), over real sockets: connection limits per listener and
per client IP answered ``421 4.7.0`` at once, the greeting deadline, idle sessions shed
under pressure, error tarpitting with a hard limit, control characters refused in
commands, and refusals logged once per interval.  Clients speak from their own loopback
addresses (127.0.0.x) so per-IP limits can be told apart."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from mailplane import metrics
from mailplane.mail.message import has_bare_line_ending
from tests.factories.messages import message as make_message
from tests.factories.mx import MxEnv


@pytest.fixture
def mx_settings_overrides() -> dict[str, Any]:
    return {"mx": {"max_connections": 40, "max_connections_per_ip": 5,
                   "greeting_deadline_seconds": 1.0, "pressure_threshold": 0.5,
                   "pressure_idle_timeout_seconds": 0.5,
                   "error_sleep_seconds": 0.01, "soft_error_limit": 2,
                   "hard_error_limit": 6}}


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(port: int, source: str = "127.0.0.1") -> Conn:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def line(conn: Conn) -> bytes:
    return await asyncio.wait_for(conn[0].readline(), 20.0)


async def command(conn: Conn, text: bytes) -> bytes:
    conn[1].write(text + b"\r\n")
    await conn[1].drain()
    reply = await line(conn)
    while reply[3:4] == b"-":
        reply = await line(conn)
    return reply


def close_all(conns: list[Conn]) -> None:
    for _reader, writer in conns:
        writer.close()


def refusals(listener: str, limit: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mailplane_limit_refusals_total", {"listener": listener, "limit": limit})
    return value or 0.0


async def test_one_client_ip_gets_its_share_and_then_421_at_once(mx: MxEnv) -> None:
    before = refusals("mx", "ip_connections")
    held = [await connect(mx.port, "127.0.0.2") for _ in range(5)]
    assert [(await line(c))[:4] for c in held] == [b"220 "] * 5
    extra = await connect(mx.port, "127.0.0.2")
    assert (await line(extra)).startswith(b"421 4.7.0")
    assert await line(extra) == b""  # and closed: no session was started for it
    other = await connect(mx.port, "127.0.0.3")  # another client is served
    assert (await line(other)).startswith(b"220 ")
    assert refusals("mx", "ip_connections") == before + 1
    # A place given back is a place for the same client again.
    held[0][1].close()
    await held[0][1].wait_closed()
    for _ in range(50):
        again = await connect(mx.port, "127.0.0.2")
        first = await line(again)
        if first.startswith(b"220 "):
            break
        again[1].close()
        await asyncio.sleep(0.05)
    assert first.startswith(b"220 ")
    close_all([*held[1:], other, again])


async def test_a_full_listener_answers_421_to_everyone_beyond_it(mx: MxEnv) -> None:
    """500 clients at once: every one gets an answer — 220 up to ``max_connections``, then
    421 4.7.0 — none is left without a greeting."""
    sources = [f"127.0.1.{n}" for n in range(1, 251)]

    async def client(n: int) -> tuple[bytes, Conn]:
        conn = await connect(mx.port, sources[n % len(sources)])
        return await line(conn), conn

    results = await asyncio.gather(*(client(n) for n in range(500)))
    codes = [first[:9] for first, _conn in results]
    assert codes.count(b"220 mx.ex") == 40
    assert codes.count(b"421 4.7.0") == 460
    close_all([conn for _first, conn in results])


async def test_no_helo_within_the_greeting_deadline_gets_421(mx: MxEnv) -> None:
    silent = await connect(mx.port, "127.0.0.4")
    assert (await line(silent)).startswith(b"220 ")
    assert (await line(silent)).startswith(b"421 4.4.2")
    assert await line(silent) == b""
    polite = await connect(mx.port, "127.0.0.4")
    await line(polite)
    assert (await command(polite, b"EHLO client.example")).startswith(b"250 ")
    await asyncio.sleep(1.5)  # past the deadline: a greeted session stays open
    assert (await command(polite, b"NOOP")).startswith(b"250 ")
    close_all([polite])


async def test_under_pressure_idle_sessions_are_shed(mx: MxEnv) -> None:
    """At 50 % of max_connections the listener is under pressure: sessions idle longer
    than the pressure timeout are closed with 421 4.4.2 to make room."""
    idle = []
    for n in range(5):
        conn = await connect(mx.port, f"127.0.2.{n + 1}")
        await line(conn)
        await command(conn, b"EHLO idle.example")
        idle.append(conn)
    await asyncio.sleep(1.0)  # longer than the 0.5 s pressure timeout
    newcomers = []
    for n in range(20):  # takes the listener to 25 of 40: pressure
        conn = await connect(mx.port, f"127.0.3.{n + 1}")
        assert (await line(conn)).startswith(b"220 ")
        newcomers.append(conn)
    for conn in idle:
        assert (await line(conn)).startswith(b"421 4.4.2")
    close_all(newcomers)


async def test_unknown_recipients_are_tarpitted_then_the_session_is_closed(
    mx: MxEnv,
) -> None:
    """Directory harvesting: 300 unknown RCPTs in one session.  After the soft limit (2)
    every error reply is delayed; at the hard limit (6) the session gets 421 4.7.0."""
    delays = metrics.REGISTRY.get_sample_value(
        "mailplane_tarpit_delays_total", {"listener": "mx"}) or 0.0
    conn = await connect(mx.port, "127.0.0.5")
    await line(conn)
    await command(conn, b"EHLO harvester.example")
    await command(conn, b"MAIL FROM:<h@harvester.example>")
    conn[1].write(b"".join(b"RCPT TO:<nobody%d@e06.example.net>\r\n" % n
                           for n in range(300)))
    replies = []
    while (reply := await line(conn)) != b"":
        replies.append(reply[:9])
    assert replies == [b"550 5.1.1"] * 6 + [b"421 4.7.0"]
    after = metrics.REGISTRY.get_sample_value(
        "mailplane_tarpit_delays_total", {"listener": "mx"}) or 0.0
    assert after - delays == 4  # errors 3..6 waited


async def test_a_delivered_message_resets_the_error_count(mx: MxEnv) -> None:
    conn = await connect(mx.port, "127.0.0.6")
    await line(conn)
    await command(conn, b"EHLO sender.example")
    for _round in range(3):
        await command(conn, b"MAIL FROM:<a@sender.example>")
        for n in range(4):  # 4 errors per round: 12 in all, above the hard limit of 6
            assert (await command(conn, b"RCPT TO:<x%d@e06.example.net>" % n)
                    ).startswith(b"550")
        assert (await command(conn, b"RCPT TO:<taro_1@e06.example.net>")).startswith(b"250")
        assert (await command(conn, b"DATA")).startswith(b"354")
        assert (await command(conn, make_message() + b".")).startswith(b"250")
    assert len(mx.inbox("taro_1@e06.example.net")) == 3
    close_all([conn])


@pytest.mark.parametrize("ehlo", [b"EHLO evil.example\rX-Injected: yes",
                                  b"EHLO evil\x00.example", b"HELO evil\x0b.example",
                                  b"EHLO evil\xc2\x85.example"])
async def test_control_characters_in_helo_are_refused(mx: MxEnv, ehlo: bytes) -> None:
    """A bare CR (or NUL, VT, NEL) in HELO never reaches the stored Received header."""
    conn = await connect(mx.port, "127.0.0.7")
    await line(conn)
    assert (await command(conn, ehlo)).startswith(b"501 5.5.2")
    # The session goes on; mail after a proper EHLO carries a clean trace.
    assert (await command(conn, b"EHLO good.example")).startswith(b"250")
    assert (await command(conn, b"MAIL FROM:<a@sender.example>")).startswith(b"250")
    assert (await command(conn, b"RCPT TO:<taro_1@e06.example.net>")).startswith(b"250")
    assert (await command(conn, b"DATA")).startswith(b"354")
    assert (await command(conn, make_message() + b".")).startswith(b"250")
    close_all([conn])
    [stored] = mx.inbox("taro_1@e06.example.net")
    assert not has_bare_line_ending(stored)
    assert b"X-Injected" not in stored and b"\x00" not in stored
    assert b"from good.example" in stored


@pytest.mark.parametrize("mail", [b"MAIL FROM:<a@sender.example> SIZE=\xc2\xb2",
                                  b'MAIL FROM:<"a\rb"@sender.example>'])
async def test_hostile_mail_from_is_a_syntax_error_not_a_traceback(
    mx: MxEnv, mail: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    conn = await connect(mx.port, "127.0.0.8")
    await line(conn)
    await command(conn, b"EHLO client.example")
    assert (await command(conn, mail))[:1] == b"5"
    assert (await command(conn, b"MAIL FROM:<a@sender.example>")).startswith(b"250")
    close_all([conn])
    assert "Traceback" not in caplog.text


async def test_refused_connections_are_logged_once_per_interval(
    mx: MxEnv, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    held = [await connect(mx.port, "127.0.0.9") for _ in range(5)]
    for conn in held:
        await line(conn)
    for _ in range(200):
        extra = await connect(mx.port, "127.0.0.9")
        assert (await line(extra)).startswith(b"421")
        extra[1].close()
    lines = [r for r in caplog.records if "refused a connection" in r.getMessage()]
    assert len(lines) <= 1
    close_all(held)


async def test_a_path_longer_than_rfc_5321_allows_is_refused(mx: MxEnv) -> None:
    """A 300-character sender would overflow the 320-character job and SRS columns
    (PostgreSQL refuses the whole delivery, 451 for every recipient, for ever)."""
    long_local = "a" * 290
    conn = await connect(mx.port, "127.0.0.10")
    await line(conn)
    await command(conn, b"EHLO client.example")
    assert (await command(conn, f"MAIL FROM:<{long_local}@sender.example>".encode())
            ).startswith(b"501 5.1.3")
    assert (await command(conn, b"MAIL FROM:<a@sender.example>")).startswith(b"250")
    assert (await command(conn, f"RCPT TO:<{long_local}@e06.example.net>".encode())
            ).startswith(b"501 5.1.3")
    close_all([conn])
