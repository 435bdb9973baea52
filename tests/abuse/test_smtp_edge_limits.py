"""SMTP limits as Postfix does them (issue 20 finding 11, SPEC §8a), over real sockets:

- the recipient overshoot rule: RCPTs past the per-message limit get ``452 4.5.3`` and are
  no error for the tarpit (``recipient_overshoot_limit``, Postfix's
  ``smtpd_recipient_overshoot_limit``), so a client with 1,000 recipients gets the first
  100 delivered instead of being cut off at the hard error limit with nothing;
- a connection over a limit is answered ``421 4.7.0`` and closed cleanly — a client that
  spoke before reading still reads the 421, never a TCP reset; on the implicit-TLS port
  the 421 comes inside the TLS session;
- refusals any client can repeat are logged once per interval (aiosmtpd's own warnings
  included)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from mailplane import metrics
from mailplane.net.throttled_log import ThrottleFilter, throttle_logger
from mailplane.storage.models import OutboundJob
from tests.factories.addresses import add_address
from tests.factories.messages import message
from tests.factories.mx import MxEnv
from tests.factories.submission import (
    SENDER,
    SubmissionEnv,
    auth_plain,
    client_tls_context,
    make_message,
    open_starttls,
)


@pytest.fixture
def mx_settings_overrides() -> dict[str, Any]:
    # The default tarpit (soft 10, hard 20 errors) with short sleeps.
    return {"mx": {"max_connections_per_ip": 3, "error_sleep_seconds": 0.01}}


def tarpit_delays(listener: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "mailplane_tarpit_delays_total", {"listener": listener}) or 0.0


# --- the recipient overshoot rule --------------------------------------------------------


async def test_a_client_with_1000_recipients_gets_the_first_100_delivered(mx: MxEnv) -> None:
    hosted = [f"r{n:03d}@e06.example.net" for n in range(200)]
    for address in hosted:
        add_address(mx.session_factory, address, contract_id=mx.contract_id)
    mx.cache.load_now()
    delays = tarpit_delays("mx")
    recipients = hosted[:100] + [f"more{n}@e06.example.net" for n in range(900)]

    def run() -> tuple[dict[str, tuple[int, bytes]], dict[str, tuple[int, bytes]]]:
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=60) as client:
            client.ehlo("lists.sender.example")
            first = client.sendmail("list@sender.example", recipients, message())
            # The session is still open: the client sends the next 100 as SMTP intends.
            second = client.sendmail("list@sender.example", hosted[100:], message())
        return first, second

    refused, refused_next = await asyncio.to_thread(run)
    assert len(refused) == 900 and refused_next == {}
    assert {(code, text.split()[0]) for code, text in refused.values()} == {(452, b"4.5.3")}
    assert all(len(mx.inbox(address)) == 1 for address in hosted)
    assert tarpit_delays("mx") == delays  # none of the 900 was an error


async def test_past_the_overshoot_limit_extra_recipients_count_as_errors_again(
    sub: SubmissionEnv,
) -> None:
    """``recipient_overshoot_limit`` bounds the free refusals of a session: beyond it each
    extra RCPT is an error again, and the hard error limit closes the session."""
    server = await sub.start(submission=sub.settings.submission.model_copy(update={
        "max_recipients_per_message": 2, "recipient_overshoot_limit": 3,
        "soft_error_limit": 1, "hard_error_limit": 4, "error_sleep_seconds": 0.01,
        "account_recipients_per_hour": 0, "ip_recipients_per_hour": 0}))

    def run() -> list[bytes]:
        with open_starttls(server.starttls_port) as client:
            assert auth_plain(client, SENDER)[0] == 235
            client.mail(SENDER)
            codes = []
            for n in range(12):
                try:
                    code, text = client.rcpt(f"friend{n}@remote.example")
                except smtplib.SMTPServerDisconnected:
                    break
                codes.append(b"%d %s" % (code, text.split()[0]))
            return codes

    codes = await asyncio.to_thread(run)
    # 2 accepted, 3 excused, then 4 counted errors: the 4th is followed by 421 and close.
    assert codes == [b"250 2.1.5"] * 2 + [b"452 4.5.3"] * 7 + [b"421 4.7.0"]


async def test_submission_with_1000_recipients_sends_the_first_100(sub: SubmissionEnv) -> None:
    recipients = [f"friend{n}@remote.example" for n in range(1000)]

    def run() -> dict[str, tuple[int, bytes]]:
        with open_starttls(sub.server.starttls_port) as client:
            assert auth_plain(client, SENDER)[0] == 235
            return client.sendmail(SENDER, recipients, make_message(to=recipients[0]))

    refused = await asyncio.to_thread(run)
    assert sorted(refused) == sorted(recipients[100:])
    assert {code for code, _text in refused.values()} == {452}
    with sub.session_factory() as session:
        [job] = session.scalars(select(OutboundJob)).all()
    assert job.recipients == recipients[:100]


# --- connections over a limit: 421 and a clean close -------------------------------------


def _read_to_eof(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


async def test_over_the_per_ip_limit_even_an_impatient_client_reads_421_and_a_clean_close(
    mx: MxEnv,
) -> None:
    """A client over the limit that speaks before reading (EHLO, then QUIT) still reads
    ``421 4.7.0`` and then the end of the stream — never a reset that can eat the 421."""
    def run() -> list[bytes]:
        held = [socket.create_connection(("127.0.0.1", mx.port), timeout=20,
                                         source_address=("127.0.0.21", 0)) for _ in range(3)]
        try:
            for sock in held:
                assert sock.recv(512).startswith(b"220 ")
            answers = []
            for _ in range(5):
                with socket.create_connection(("127.0.0.1", mx.port), timeout=20,
                                              source_address=("127.0.0.21", 0)) as extra:
                    extra.sendall(b"EHLO impatient.example\r\n")
                    time.sleep(0.2)  # the server has refused and closed meanwhile
                    extra.sendall(b"QUIT\r\n")
                    answers.append(_read_to_eof(extra))
            return answers
        finally:
            for sock in held:
                sock.close()

    answers = await asyncio.to_thread(run)
    assert answers == [b"421 4.7.0 Too many connections, try again later\r\n"] * 5


async def test_over_the_per_ip_limit_the_implicit_tls_port_says_421_inside_tls(
    sub: SubmissionEnv,
) -> None:
    """Decision (docs/security.md): on the implicit-TLS port a client over the per-IP
    limit gets the handshake and then ``421 4.7.0`` — a mail program can show the reason —
    as Postfix's smtpd does in wrapper mode; at most 16 such handshakes at once, and none
    when the listener itself is full."""
    await sub.servers[0].aclose()
    sub.servers.clear()
    server = await sub.start(submission=sub.settings.submission.model_copy(
        update={"max_connections_per_ip": 2}))

    def run() -> tuple[int, bytes]:
        context = client_tls_context()
        held = [context.wrap_socket(socket.create_connection(
            ("127.0.0.1", server.tls_port), timeout=20)) for _ in range(2)]
        try:
            for sock in held:
                assert sock.recv(512).startswith(b"220 ")
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                smtplib.SMTP_SSL("127.0.0.1", server.tls_port, timeout=20, context=context)
            return refused.value.smtp_code, refused.value.smtp_error
        finally:
            for sock in held:
                sock.close()

    code, text = await asyncio.to_thread(run)
    assert (code, text) == (421, b"4.7.0 Too many connections, try again later")


# --- logging under repetition ------------------------------------------------------------


@pytest.fixture
def throttled_mail_log() -> Iterator[None]:
    """The node's logging set-up for aiosmtpd's logger (node/logging.py), undone after."""
    logger = logging.getLogger("mail.log")
    throttle_logger("mail.log")
    yield
    for found in [f for f in logger.filters if isinstance(f, ThrottleFilter)]:
        logger.removeFilter(found)


async def test_a_flood_of_unknown_commands_is_one_log_line(
    mx: MxEnv, caplog: pytest.LogCaptureFixture, throttled_mail_log: None,
) -> None:
    caplog.set_level(logging.WARNING)

    def run() -> None:
        for session in range(3):
            with socket.create_connection(("127.0.0.1", mx.port), timeout=20,
                                          source_address=(f"127.0.0.3{session}", 0)) as sock:
                sock.sendall(b"EHLO x.example\r\n"
                             + b"".join(b"BOGUS%d\r\n" % n for n in range(8)) + b"QUIT\r\n")
                _read_to_eof(sock)

    await asyncio.to_thread(run)
    lines = [r for r in caplog.records if "unrecognised" in r.getMessage()]
    assert len(lines) == 1


async def test_a_flood_of_mime_bombs_is_one_log_line(
    mx: MxEnv, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    levels = 300  # deeper than mx.max_mime_depth (128)
    bomb = (b"From: alice@sender.example\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n"
            + b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n'
                       % (i, i) for i in range(levels))
            + b"Content-Type: text/plain\r\n\r\nx"
            + b"".join(b"\r\n--b%d--" % i for i in reversed(range(levels))) + b"\r\n")
    for _ in range(6):
        assert (await mx.send_expect_error(bomb))[0] == 554
    lines = [r for r in caplog.records if "refused a message" in r.getMessage()]
    assert len(lines) <= 1


def test_the_old_tls_versions_are_not_even_offered_by_the_server_context(
    tmp_path: Any, make_settings: Any,
) -> None:
    from mailplane.net.tls import server_ssl_context

    context = server_ssl_context(make_settings(state_dir=str(tmp_path)))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
