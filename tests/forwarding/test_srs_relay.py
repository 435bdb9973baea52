"""An SRS address relays only real bounces of real forwards (issue 20, findings 1 and 10;
SPEC §5), attacked as a stranger on the Internet would: guessed and forged addresses,
mail that is no bounce, a virus, floods.  A real MX, the queue worker, a DNS stub and
capture servers on loopback — every relayed message is counted where it arrives — on
SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from email import message_from_bytes
from typing import Any

import pytest

from mailplane.mail.srs import Srs
from tests.factories.dns import DnsStub
from tests.factories.flow import FLOW_MX_SETTINGS, Flow, senders_authenticated
from tests.factories.messages import EICAR
from tests.factories.mx import make_message
from tests.factories.outbound import SRS_DOMAIN, SRS_SECRET, CaptureMx

TARO = "taro_1@e06.example.net"
ALICE = "alice@sender.example"
DESTINATION = "a@dest-one.example"


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest,
                          dns_stub: DnsStub) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        **FLOW_MX_SETTINGS,
        # The senders whose forwards these bounces return pass SPF (SPEC §5).
        **senders_authenticated(dns_stub, "sender.example", "second.example"),
        "srs": {**FLOW_MX_SETTINGS["srs"], "returns_per_address_per_hour": 3,
                "returns_per_ip_per_hour": 5, "invalid_per_ip_per_hour": 5},
        # The tarpit's delays, shortened: the test counts replies, not seconds.
        "mx": {"error_sleep_seconds": 0.01, "max_error_sleep_seconds": 0.05},
    }
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return overrides


def delivery_report(srs_address: str, failed: str, *, extra_part: bytes = b"") -> bytes:
    """What a destination MTA sends back (RFC 3464): the failed recipient, the original's
    headers."""
    return (
        b"From: Mail Delivery System <MAILER-DAEMON@dest-one.example>\r\n"
        b"To: " + srs_address.encode() + b"\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        b"--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.dest-one.example\r\n\r\n"
        b"Final-Recipient: rfc822; " + failed.encode() + b"\r\n"
        b"Action: failed\r\nStatus: 5.1.1\r\n\r\n"
        + extra_part +
        b"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: Hello\r\n\r\n"
        b"--b1--\r\n")


async def forwarded(flow: Flow, sender: str = ALICE, sender_host: str = "127.0.0.3",
                    destination: CaptureMx | None = None) -> tuple[str, CaptureMx, CaptureMx]:
    """Forward one message from ``sender`` through Taro; the SRS address it left with,
    the sender's MX (where relayed bounces arrive) and the destination's."""
    destination = destination or flow.remote("dest-one.example", "127.0.0.2")
    sender_mx = flow.remote(sender.rpartition("@")[2], sender_host)
    flow.set_forwarding(TARO, [DESTINATION], keep_copy=True)
    await flow.mx.send(make_message(sender=sender), mail_from=sender)
    await flow.drain()
    srs_address = destination.envelopes[-1].mail_from
    assert srs_address.lower().startswith("srs0=")
    return srs_address, sender_mx, destination


async def test_a_real_bounce_of_a_real_forward_reaches_the_original_sender_once(
    flow: Flow,
) -> None:
    srs_address, sender_mx, _ = await forwarded(flow)
    await flow.mx.send(delivery_report(srs_address, DESTINATION), mail_from="",
                       rcpt_tos=[srs_address])
    await flow.drain()
    [relayed] = sender_mx.envelopes
    assert (relayed.mail_from, relayed.rcpt_tos) == ("", [ALICE])
    assert message_from_bytes(relayed.data)["Subject"] == "Undelivered Mail Returned to Sender"


async def test_an_srs_address_we_never_emitted_is_refused_even_with_a_valid_hash(
    flow: Flow,
) -> None:
    """The attacker who guessed (or computed) a hash still gets nowhere: only addresses
    recorded as emitted for a forward take bounces."""
    victim_mx = flow.remote("victim.example", "127.0.0.4")
    srs = Srs(secret=SRS_SECRET, domain=SRS_DOMAIN, now=flow.mx.clock.now)
    never_emitted = srs.forward("victim@victim.example")
    code, text = await flow.mx.send_expect_error(
        delivery_report(never_emitted, DESTINATION), mail_from="", rcpt_tos=[never_emitted])
    assert (code, text[:5]) == (550, "5.1.1")
    await flow.drain()
    assert victim_mx.envelopes == []


async def test_mail_to_an_srs_address_that_is_not_a_bounce_of_its_forward_is_refused(
    flow: Flow,
) -> None:
    srs_address, sender_mx, _ = await forwarded(flow)
    spam = make_message(sender="MAILER-DAEMON@dest-one.example", to=srs_address,
                        subject="cheap watches", body="buy now\r\n")
    other = delivery_report(srs_address, "someone-else@dest-one.example")
    for message in (spam, other):
        code, text = await flow.mx.send_expect_error(message, mail_from="",
                                                     rcpt_tos=[srs_address])
        assert (code, text[:5]) == (550, "5.7.1")
    code, _text = await flow.mx.send_expect_error(spam, mail_from="mallory@evil.example",
                                                  rcpt_tos=[srs_address])
    assert code == 550
    await flow.drain()
    assert sender_mx.envelopes == []


async def test_a_bounce_carrying_a_virus_is_refused_at_data(flow: Flow) -> None:
    srs_address, sender_mx, _ = await forwarded(flow)
    infected = (b"--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + EICAR + b"\r\n")
    code, text = await flow.mx.send_expect_error(
        delivery_report(srs_address, DESTINATION, extra_part=infected), mail_from="",
        rcpt_tos=[srs_address])
    assert (code, text) == (554, "5.7.1 Message refused: a virus was found in it")
    await flow.drain()
    assert sender_mx.envelopes == []


async def test_bounces_are_rate_limited_per_srs_address_and_per_client_ip(
    flow: Flow,
) -> None:
    srs_address, sender_mx, destination = await forwarded(flow)
    report = delivery_report(srs_address, DESTINATION)
    for _ in range(3):  # srs.returns_per_address_per_hour
        assert await flow.mx.send(report, mail_from="", rcpt_tos=[srs_address]) == {}
    code, text = await flow.mx.send_expect_error(report, mail_from="",
                                                 rcpt_tos=[srs_address])
    assert (code, text[:5]) == (450, "4.7.1")

    second, second_mx, _ = await forwarded(flow, "bob@second.example", "127.0.0.5",
                                           destination)
    assert second != srs_address
    second_report = delivery_report(second, DESTINATION)
    for _ in range(2):  # the client IP's 5 (srs.returns_per_ip_per_hour) are spent
        assert await flow.mx.send(second_report, mail_from="", rcpt_tos=[second]) == {}
    code, _text = await flow.mx.send_expect_error(second_report, mail_from="",
                                                  rcpt_tos=[second])
    assert code == 450
    await flow.drain()
    assert len(sender_mx.envelopes) == 3 and len(second_mx.envelopes) == 2


async def test_a_client_guessing_srs_addresses_is_tarpitted_and_barely_logged(
    flow: Flow, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    guesses = [f"SRS0=AAAAAAA{n:03d}=AA=victim.example=bob@{SRS_DOMAIN}" for n in range(8)]
    payload = b"EHLO guesser.example\r\nMAIL FROM:<>\r\n" + b"".join(
        f"RCPT TO:<{g}>\r\n".encode() for g in guesses) + b"QUIT\r\n"
    lines = await flow.mx.raw_session(payload)
    rcpt_replies = [line for line in lines if line[:3] in ("550", "421")]
    # srs.invalid_per_ip_per_hour = 5: the sixth guess is answered, then the session ends.
    assert [r[:3] for r in rcpt_replies] == ["550"] * 6 + ["421"], lines
    # The same client's next session is closed at its first guess.
    lines = await flow.mx.raw_session(payload)
    assert [line[:3] for line in lines if line[:3] in ("550", "421")] == ["550", "421"]
    # Fourteen refusals, at most one log line (one a minute per kind, in the process).
    refusals = [r for r in caplog.records if "refused SRS recipient" in r.getMessage()]
    assert len(refusals) <= 1, [r.getMessage() for r in refusals]
