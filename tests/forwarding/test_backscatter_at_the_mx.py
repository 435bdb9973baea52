"""No auto-reply, DSN or relayed bounce to a sender whose domain says the mail is not
theirs (SPEC §5, §6; issue 21) — decided by what the MX itself verified over a real SMTP
socket, with ``[authentication] nameserver`` on the loopback DNS stub that publishes the
sender domain's SPF (and DMARC) records.  (``test_backscatter.py`` tests the same rules
with the verdict handed to the delivery directly.)

Taro answers with an auto-reply and forwards, keeping a copy, to a destination that
refuses for good (→ a DSN to the sender) and to one that takes the forward and later
bounces it to our SRS address (→ relayed to the sender).  The sender's own MX is a
capture server: what it receives is all the backscatter there is.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from mailplane import metrics
from mailplane.storage.models import Address, AutoReply, ForwardDestination
from tests.factories.addresses import add_address
from tests.factories.dns import DnsStub
from tests.factories.flow import FLOW_MX_SETTINGS, LOOPBACK_SPF, Flow
from tests.factories.mx import make_message
from tests.factories.outbound import CaptureMx, OutboundEnv
from tests.factories.queue import jobs

TARO = "taro_1@e06.example.net"
JIRO = "jiro_3@e06.example.net"
SENDER = "alice@sender.example"
REFUSING = "a@dest-one.example"
BOUNCING = "b@dest-two.example"
SPF_FAIL = "v=spf1 -all"


@pytest.fixture
def mx_settings_overrides(dns_stub: DnsStub) -> dict[str, Any]:
    """The flow's settings; the MX verifies senders against the flow's DNS stub."""
    return {**FLOW_MX_SETTINGS,
            "authentication": {"nameserver": f"{dns_stub.host}:{dns_stub.port}"}}


def setup(flow: Flow, spf: str) -> tuple[CaptureMx, CaptureMx]:
    """Taro's auto-reply and forwards; sender.example publishes ``spf``.  Returns (the
    destination that takes the forward, the sender's MX)."""
    refusing = flow.remote("dest-one.example", "127.0.0.2")
    refusing.handler.rcpt_replies[REFUSING] = "550 5.1.1 no such user"
    taking = flow.remote("dest-two.example", "127.0.0.4")
    sender_mx = flow.remote("sender.example", "127.0.0.3")
    flow.dns.zone["sender.example"]["TXT"] = [spf]
    flow.set_forwarding(TARO, [REFUSING, BOUNCING], keep_copy=True)
    flow.set_auto_reply(TARO, default_message="ただいま不在です。\n")
    return taking, sender_mx


async def bounce_the_forward(flow: Flow, taking: CaptureMx) -> int:
    """dest-two's MTA bounces the forward it took to the forward's SRS address, through
    our MX; returns our reply code."""
    [forward] = taking.envelopes
    assert forward.mail_from.lower().startswith("srs0=")
    bounce = (b"From: MAILER-DAEMON@dest-two.example\r\nTo: " + forward.mail_from.encode()
              + b"\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n<"
              + BOUNCING.encode() + b">: mailbox full\r\n")
    code, _text = await flow.mx.send_expect_error(bounce, mail_from="",
                                                  rcpt_tos=[forward.mail_from])
    await flow.drain()
    return code


def kinds(sender_mx: CaptureMx) -> list[str]:
    """What reached the sender: ``auto_reply``, ``dsn`` or ``bounce`` (relayed)."""
    found = []
    for envelope in sender_mx.envelopes:
        message = message_from_bytes(envelope.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        if message.get_content_type() == "multipart/report":
            found.append("dsn")
        elif message["Auto-Submitted"] == "auto-replied":
            found.append("auto_reply")
        elif str(message["From"]).startswith("MAILER-DAEMON@dest-two"):
            found.append("bounce")
        else:
            found.append(f"unexpected: {message['Subject']}")
    return sorted(found)


def verdict(stored: bytes) -> tuple[str, str]:
    """(our Authentication-Results, our X-Mailplane-Verdict) of the stored copy."""
    message = message_from_bytes(stored, policy=policy.compat32)
    return (" ".join(str(message["Authentication-Results"]).split()),
            str(message["X-Mailplane-Verdict"]))


async def test_a_sender_that_fails_spf_gets_no_reply_no_dsn_and_no_relayed_bounce(
    flow: Flow,
) -> None:
    taking, sender_mx = setup(flow, SPF_FAIL)
    await flow.mx.send(make_message(subject="forged"), mail_from=SENDER)

    [stored] = flow.mx.inbox(TARO)  # SPF fail alone is no reason to lose the mail
    results, notes = verdict(stored)
    assert results.startswith("mx.example.net; spf=fail smtp.mailfrom=alice@sender.example")
    assert "auto_reply=suppressed:sender_fails_spf_or_dmarc" in notes
    await flow.drain()
    assert [e.rcpt_tos for e in taking.envelopes] == [[BOUNCING]]  # the forward goes out
    assert await bounce_the_forward(flow, taking) == 550  # its SRS address takes nothing
    assert sender_mx.envelopes == []


async def test_a_sender_that_passes_spf_gets_the_reply_the_dsn_and_the_bounce(
    flow: Flow,
) -> None:
    taking, sender_mx = setup(flow, LOOPBACK_SPF)
    await flow.mx.send(make_message(subject="genuine"), mail_from=SENDER)

    [stored] = flow.mx.inbox(TARO)
    results, notes = verdict(stored)
    assert results.startswith("mx.example.net; spf=pass smtp.mailfrom=alice@sender.example")
    assert "suppressed" not in notes
    await flow.drain()
    assert await bounce_the_forward(flow, taking) == 250
    assert kinds(sender_mx) == ["auto_reply", "bounce", "dsn"]
    assert {tuple(e.rcpt_tos) for e in sender_mx.envelopes} == {(SENDER,)}


async def test_a_from_domain_that_fails_dmarc_gets_no_reply_but_its_proven_sender_a_dsn(
    flow: Flow,
) -> None:
    """The envelope sender passes SPF; the From domain (``p=none``, so delivered) fails
    DMARC.  SPEC §6: no reply when the sender fails SPF *or DMARC*.  SPEC §5: a DSN or a
    bounce goes to an envelope sender that authenticated — this one did."""
    taking, sender_mx = setup(flow, LOOPBACK_SPF)
    flow.dns.zone["_dmarc.bank.example"] = {"TXT": ["v=DMARC1; p=none"]}
    flow.dns.zone["bank.example"] = {"TXT": ["v=spf1 -all"]}
    await flow.mx.send(make_message(subject="from a bank", sender="news@bank.example"),
                       mail_from=SENDER)

    [stored] = flow.mx.inbox(TARO)
    results, notes = verdict(stored)
    assert "spf=pass" in results and "dmarc=fail (p=none) header.from=bank.example" in results
    assert "auto_reply=suppressed:sender_fails_spf_or_dmarc" in notes
    await flow.drain()
    assert await bounce_the_forward(flow, taking) == 250
    assert kinds(sender_mx) == ["bounce", "dsn"]


def withheld(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("mailplane_dsns_withheld_total",
                                             {"reason": reason}) or 0.0


def add_unseen(flow: Flow, address: str, *, forward_to: list[str], reply: str) -> None:
    """``address`` with its forward and auto-reply, written as another node's API would:
    in the database only — this node's policy snapshot does not know it yet."""
    pop_account = add_address(flow.mx.session_factory, address,
                              contract_id=flow.mx.contract_id)
    with flow.mx.session_factory() as session, session.begin():
        row = session.scalars(select(Address).where(Address.pop_account == pop_account)).one()
        for position, destination in enumerate(forward_to):
            session.add(ForwardDestination(address_id=row.id, destination=destination,
                                           position=position))
        session.add(AutoReply(address_id=row.id, enabled=True, special_senders=[],
                              special_message="", default_message=reply))
    assert flow.mx.cache.snapshot.lookup(address) is None


async def test_a_forward_queued_to_a_hosted_address_keeps_the_senders_verdict(
    flow: Flow,
) -> None:
    """Taro forwards to Jiro, created a moment ago elsewhere: the MX's snapshot does not
    know Jiro yet, so the forward is queued and the queue's local transport delivers it
    once it does.  The sender failed SPF at the MX, and still has on that second hop:
    Jiro's auto-reply and the DSN of Jiro's failing forward do not go to it."""
    refusing = flow.remote("dest-one.example", "127.0.0.2")
    refusing.handler.rcpt_replies[REFUSING] = "550 5.1.1 no such user"
    sender_mx = flow.remote("sender.example", "127.0.0.3")
    flow.dns.zone["sender.example"]["TXT"] = [SPF_FAIL]
    flow.set_forwarding(TARO, [JIRO], keep_copy=True)
    add_unseen(flow, JIRO, forward_to=[REFUSING], reply="出張中です。\n")

    await flow.mx.send(make_message(subject="forged", to=f"{TARO}, {JIRO}"),
                       mail_from=SENDER)
    assert len(flow.mx.inbox(TARO)) == 1
    env = OutboundEnv(flow.mx.settings, flow.mx.session_factory, flow.mx.clock)
    before = withheld("unauthenticated")
    [queued] = jobs(env)
    assert (queued.kind, queued.recipients, queued.bounce_to_sender) == (
        "forward", [JIRO], False)
    flow.mx.cache.load_now()  # the snapshot refreshes
    await flow.drain()

    [stored] = flow.mx.inbox(JIRO)
    assert "auto_reply=suppressed:sender_fails_spf_or_dmarc" in verdict(stored)[1]
    # Jiro's forward was tried and refused for good …
    [jiros] = [j for j in jobs(env) if j.recipients == [REFUSING]]
    assert (jiros.status, jiros.bounce_to_sender) == ("failed", False)
    assert withheld("unauthenticated") - before == 1
    assert sender_mx.envelopes == []  # … and nothing went back to the forged sender
