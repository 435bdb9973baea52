"""Sender authentication under attack (non-negotiable 4): a stranger's message can make
the MX query the DNS only a bounded number of times, never before a recipient is
accepted, and never makes it wait past the time budget or lose the message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories.dns import DnsStub
from tests.factories.mx import MxEnv, make_message

TARO = "taro_1@e06.example.net"


@pytest.fixture
def stub() -> Iterator[DnsStub]:
    with DnsStub() as dns:
        yield dns


@pytest.fixture
def mx_settings_overrides(stub: DnsStub) -> dict[str, Any]:
    return {"authentication": {"nameserver": f"{stub.host}:{stub.port}"}}


def hostile_message() -> bytes:
    """20 DKIM signatures of 20 domains, 60 ARC sets, a From with 12 domains."""
    signatures = "".join(
        f"DKIM-Signature: v=1; a=rsa-sha256; d=d{n}.evil.example; s=s{n}; h=from; "
        f"bh=AAAA; b=AAAA\r\n" for n in range(20))
    arc = "".join(
        f"ARC-Seal: i={n}; a=rsa-sha256; cv=pass; d=a{n}.evil.example; s=x; b=AAAA\r\n"
        f"ARC-Message-Signature: i={n}; a=rsa-sha256; d=a{n}.evil.example; s=x; h=from; "
        f"bh=AAAA; b=AAAA\r\n" for n in range(1, 61))
    authors = ", ".join(f"x@f{n}.evil.example" for n in range(12))
    return (signatures + arc).encode() + make_message(sender=None, extra_headers=(
        f"From: {authors}\r\n"))


async def test_a_hostile_message_makes_a_bounded_number_of_queries(
        mx: MxEnv, stub: DnsStub) -> None:
    # An SPF record that tries to make us query without end.
    stub.zone["evil.example"] = {"TXT": [
        "v=spf1 " + " ".join(f"exists:%{{i}}.{n}.evil.example" for n in range(30)) + " -all"]}
    await mx.send(hostile_message(), mail_from="x@evil.example")
    assert len(mx.inbox(TARO)) == 1  # delivered (a permerror or fail is no reason to lose it)
    spf = [q for q in stub.queries if q[0].endswith("evil.example") and q[1] == "A"]
    keys = [q for q in stub.queries if "._domainkey." in q[0]]
    dmarc = [q for q in stub.queries if q[0].startswith("_dmarc.")]
    assert len(spf) <= 10  # RFC 7208 §4.6.4
    assert len(keys) <= 5  # [authentication] max_dkim_signatures; ARC: too many, no lookup
    assert len(dmarc) <= 5 * 8  # 5 author domains, 8 queries per walk at most
    assert len(stub.queries) <= 60


async def test_no_lookup_happens_before_a_recipient_is_accepted(
        mx: MxEnv, stub: DnsStub) -> None:
    lines = await mx.raw_session(
        b"EHLO client.example\r\nMAIL FROM:<x@probe.example>\r\n"
        b"RCPT TO:<nobody@elsewhere.example>\r\nRSET\r\nQUIT\r\n")
    assert any(line.startswith("554") for line in lines)  # not hosted: refused
    await asyncio.sleep(0.2)
    assert stub.queries == []


async def test_a_session_that_leaves_after_rcpt_leaves_nothing_running(
        mx: MxEnv, stub: DnsStub) -> None:
    stub.silent = True
    await mx.raw_session(b"EHLO client.example\r\nMAIL FROM:<x@slow.example>\r\n"
                         b"RCPT TO:<" + TARO.encode() + b">\r\nQUIT\r\n")
    assert mx.server is not None
    verifier = mx.server.handler.verifier
    for _ in range(100):  # the SPF task is cancelled with the envelope, not left waiting
        if not verifier.tasks:
            break
        await asyncio.sleep(0.05)
    assert not verifier.tasks
