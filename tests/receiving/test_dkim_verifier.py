"""Our DKIM verifier (:mod:`mailplane.mailauth.dkim`) agrees with dkimpy, the independent
verifier, on generated messages: every canonicalisation, folded and repeated headers,
tabs, runs of spaces, trailing blanks and empty lines, ``l=``, over-signing, RSA and
Ed25519 — signed by dkimpy, then tampered with.  Keys come from a real DNS server on
loopback; the only thing compared is the verdict."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailplane.mail.auth_results import DkimSignatureResult
from mailplane.mailauth.dkim import canonical_body, prepare, verify
from mailplane.mailauth.dns import Deadline, DnsClient, make_resolver
from tests.factories.dns import DnsStub
from tests.factories.senders import SendingDomain, ed25519_key, rsa_key

DOMAIN = SendingDomain("sign.example")


@pytest.fixture(scope="module")
def stub() -> Iterator[DnsStub]:
    with DnsStub() as dns:
        DOMAIN.publish(dns.zone)
        dns.zone["small._domainkey.sign.example"] = {"TXT": [rsa_key(768).public_record]}
        dns.zone["revoked._domainkey.sign.example"] = {"TXT": ["v=DKIM1; k=rsa; p="]}
        dns.zone["web._domainkey.sign.example"] = {
            "TXT": [rsa_key().public_record.replace("v=DKIM1;", "v=DKIM1; s=tlsrpt;")]}
        yield dns


def ours(stub: DnsStub, message: bytes) -> tuple[DkimSignatureResult, ...]:
    async def run() -> tuple[DkimSignatureResult, ...]:
        client = DnsClient(make_resolver((stub.host, stub.port)))
        prepared = await prepare(client, Deadline(5), message, max_signatures=10)
        results, _arc = await verify(message, prepared)
        return results

    return asyncio.run(run())


def dkimpy(stub: DnsStub, message: bytes) -> bool:
    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        records = stub.zone.get(name.decode().rstrip("."), {}).get("TXT")
        return str(records[0]).encode() if records else None

    return bool(dkim.verify(message, dnsfunc=txt))


WSP = st.sampled_from([" ", "  ", "\t", " \t ", ""])
WORD = st.text(alphabet="abcXYZ019.-=@", min_size=1, max_size=8)


@st.composite
def header_value(draw: st.DrawFn) -> str:
    words = draw(st.lists(WORD, min_size=1, max_size=5))
    value = draw(WSP)
    for word in words:
        value += word + draw(st.sampled_from([" ", "  ", "\t", "\r\n ", "\r\n\t", " \r\n  "]))
    return value + draw(WSP)


@st.composite
def message(draw: st.DrawFn) -> bytes:
    headers = [("From", f"{draw(WSP)}alice@sign.example{draw(WSP)}"),
               ("To", draw(header_value())), ("Subject", draw(header_value()))]
    for _ in range(draw(st.integers(0, 3))):
        headers.append((draw(st.sampled_from(["X-Received", "X-Note", "Cc", "subject"])),
                        draw(header_value())))
    draw(st.randoms()).shuffle(headers)
    head = "".join(f"{name}:{value}\r\n" for name, value in headers)
    lines = draw(st.lists(st.text(alphabet="ab \t.", max_size=12), max_size=6))
    body = "".join(line + "\r\n" for line in lines) + "\r\n" * draw(st.integers(0, 3))
    return (head + "\r\n" + body).encode()


SIGNED = st.lists(st.sampled_from([b"from", b"to", b"subject", b"cc", b"x-received",
                                   b"x-note", b"reply-to"]), min_size=0, max_size=6)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(message(), st.sampled_from([b"simple", b"relaxed"]),
       st.sampled_from([b"simple", b"relaxed"]), SIGNED, st.booleans(), st.booleans(),
       st.data())
def test_we_agree_with_dkimpy(stub: DnsStub, raw: bytes, header_canon: bytes,
                              body_canon: bytes, extra: list[bytes], ed: bool, length: bool,
                              data: st.DataObject) -> None:
    key = ed25519_key() if ed else rsa_key()
    selector = DOMAIN.ed25519_selector if ed else DOMAIN.rsa_selector
    signature = dkim.sign(raw, selector.encode(), b"sign.example", key.private,
                          canonicalize=(header_canon, body_canon),
                          signature_algorithm=key.algorithm,
                          include_headers=[b"from", *extra], length=length)
    signed = signature + raw
    [result] = ours(stub, signed)
    assert result.result == "pass"
    assert dkimpy(stub, signed)
    # Tampered: whatever we change, we say what dkimpy says.
    change = data.draw(st.sampled_from(["body", "space", "header", "from", "line"]))
    if change == "body":
        tampered = signed.replace(b"\r\n\r\n", b"\r\n\r\nX", 1)
    elif change == "space":
        tampered = signed.replace(b"\r\n\r\n", b"\r\n\r\n \t", 1)
    elif change == "header":
        tampered = signed.replace(b"Subject:", b"Subject: Re:", 1)
    elif change == "from":
        tampered = signed.replace(b"\r\n\r\n", b"\r\nFrom: mallory@evil.example\r\n\r\n", 1)
    else:
        tampered = signed + b"appended line\r\n"
    [result] = ours(stub, tampered)
    assert (result.result == "pass") == dkimpy(stub, tampered), (change, tampered)


@pytest.mark.parametrize(("selector", "result"), [
    ("small", "permerror"),  # RFC 8301: under 1024 bits
    ("revoked", "permerror"),  # empty p=
    ("web", "permerror"),  # s=tlsrpt: not a key for mail
    ("missing", "permerror"),  # no record
])
def test_unusable_keys(stub: DnsStub, selector: str, result: str) -> None:
    raw = b"From: alice@sign.example\r\nSubject: x\r\n\r\nbody\r\n"
    key = rsa_key(768) if selector == "small" else rsa_key()
    signed = dkim.sign(raw, selector.encode(), b"sign.example", key.private,
                       include_headers=[b"from"]) + raw
    assert [r.result for r in ours(stub, signed)] == [result]


@pytest.mark.parametrize(("tags", "result"), [
    ("v=1; a=rsa-sha1; d=sign.example; s=rsa2048; h=from; bh=AAAA; b=AAAA", "policy"),
    ("v=1; a=rsa-sha256; d=sign.example; s=rsa2048; h=subject; bh=AAAA; b=AAAA", "neutral"),
    ("v=1; a=rsa-sha256; d=sign.example; s=rsa2048; h=from; bh=AAAA; b=AAAA; x=1",
     "neutral"),  # expired
    ("v=1; a=rsa-sha256; d=sign.example; s=rsa2048; h=from; bh=AAAA; b=AAAA; "
     "i=@other.example", "neutral"),
    ("v=1; a=rsa-sha256; d=sign.example; d=x.example; s=rsa2048; h=from; bh=A; b=A",
     "neutral"),  # a repeated tag
    ("v=1; a=rsa-sha256; d=sign.example; s=rsa2048; h=from; bh=AAAA; b=AAAA", "fail"),
])
def test_signatures_judged_from_their_tags(stub: DnsStub, tags: str, result: str) -> None:
    message = f"DKIM-Signature: {tags}\r\nFrom: alice@sign.example\r\n\r\nbody\r\n".encode()
    assert [r.result for r in ours(stub, message)] == [result]


@pytest.mark.parametrize("body", [
    b"", b"\r\n", b"\r\n\r\n", b"a\r\n", b"a  b\t\r\n\r\n", b" \r\n", b"a", b"a \r\nb\t \r\n",
])
def test_the_relaxed_fast_path_is_the_relaxed_canonicalisation(body: bytes) -> None:
    expected = dkim.canonicalization.Relaxed.canonicalize_body(body)
    assert canonical_body(body, relaxed=True) == expected
    assert canonical_body(body, relaxed=False) == dkim.canonicalization.Simple.canonicalize_body(
        body)
