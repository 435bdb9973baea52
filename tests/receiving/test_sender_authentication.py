"""SPEC §8b on the MX, over real sockets: SPF, DKIM, DMARC and ARC checked against a real
DNS server on loopback, one Authentication-Results on the stored copy, forged ones with
our authserv-id removed, and the treatment of each outcome (docs/architecture.md
"Sender authentication"):

- authenticated mail → the inbox, the header says ``pass``;
- DMARC ``fail`` under ``p=reject|quarantine``, or a hosted domain claimed without proof
  → quarantined as なりすまし (``spoofed``), even for an allow-listed sender;
- a broken DKIM signature or an SPF ``fail`` alone → delivered, the header says so (the
  spam score counts it);
- a DNS server that never answers → ``temperror``, delivered.

Database-touching cases run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from typing import Any

import aiosmtplib
import dkim
import pytest
from sqlalchemy import select

from mailplane.metrics import REGISTRY
from mailplane.notices.digest import send_quarantine_digests
from mailplane.storage.models import QuarantineItem
from tests.factories.dns import DnsStub
from tests.factories.mx import MxEnv, make_message
from tests.factories.senders import SendingDomain

TARO = "taro_1@e06.example.net"
AUTHSERV = "mx.example.net"  # the mx fixture's hostname: our authserv-id

SENDER = SendingDomain("sender.example")
BANK = SendingDomain("bank.example")
LOOSE = SendingDomain("loose.example", dmarc=None)  # SPF and DKIM, no DMARC
TESTING = SendingDomain("testing.example", dmarc="v=DMARC1; p=quarantine; t=y")
QUARANTINE = SendingDomain("q.example", dmarc="v=DMARC1; p=quarantine",
                           spf="v=spf1 ip4:192.0.2.1 -all")
FORWARDER = SendingDomain("lists.example")


@pytest.fixture
def zone_dns() -> Iterator[DnsStub]:
    """The Internet of these tests: every sending domain's records on a real DNS
    server on loopback; evil.example sends from our IP but publishes no DMARC."""
    with DnsStub() as stub:
        for domain in (SENDER, BANK, LOOSE, TESTING, QUARANTINE, FORWARDER):
            domain.publish(stub.zone)
        stub.zone["evil.example"] = {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]}
        stub.zone["_dmarc.example.net"] = {"TXT": ["v=DMARC1; p=none"]}
        yield stub


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest, zone_dns: DnsStub) -> dict[str, Any]:
    overrides: dict[str, Any] = {"authentication": {
        "nameserver": f"{zone_dns.host}:{zone_dns.port}"}}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return overrides


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def our_results(stored: bytes) -> str:
    """The one Authentication-Results with our authserv-id, unfolded."""
    values = [" ".join(str(v).split()) for v in parse(stored).get_all(
        "Authentication-Results", [])]
    ours = [v for v in values if v.lower().startswith(AUTHSERV + ";")]
    assert len(ours) == 1, values
    return ours[0]


def quarantine_reasons(mx: MxEnv, address: str = TARO) -> list[str]:
    with mx.session_factory() as session:
        return list(session.scalars(select(QuarantineItem.reason)
                                    .where(QuarantineItem.address == address)))


def signed(domain: SendingDomain, *, sender: str | None = None, **kwargs: Any) -> bytes:
    """A message from ``sender`` (default ``alice@<domain>``), signed by ``domain`` with
    RSA and Ed25519 side by side."""
    message = make_message(sender=sender or f"alice@{domain.domain}", **kwargs)
    return domain.sign(domain.sign(message), ed25519=True)


def counted(check: str, result: str) -> float:
    return REGISTRY.get_sample_value("mailplane_sender_authentication_total",
                                     {"check": check, "result": result}) or 0.0


async def test_authenticated_mail_passes_everything_and_says_so(mx: MxEnv,
                                                               zone_dns: DnsStub) -> None:
    before = counted("dkim", "pass"), counted("dmarc", "pass")
    await mx.send(signed(SENDER), mail_from="alice@sender.example")
    assert (counted("dkim", "pass"), counted("dmarc", "pass")) == (before[0] + 2,
                                                                   before[1] + 1)
    [stored] = mx.inbox(TARO)
    results = our_results(stored)
    assert "spf=pass smtp.mailfrom=alice@sender.example" in results
    assert results.count("dkim=pass") == 2
    assert "header.a=rsa-sha256" in results and "header.a=ed25519-sha256" in results
    assert "dmarc=pass (p=reject) header.from=sender.example" in results
    assert "arc=none" in results
    assert quarantine_reasons(mx) == []
    # The copy we stored still verifies with dkimpy's own verifier and our records:
    # nothing we added or removed broke the sender's signatures.
    def txt(name: bytes, timeout: int = 5) -> bytes:
        records = zone_dns.zone[name.decode().rstrip(".")]["TXT"]
        return str(records[0]).encode()
    assert dkim.verify(stored, dnsfunc=txt)
    queried = {name for name, _type in zone_dns.queries}
    assert {"sender.example", "rsa2048._domainkey.sender.example",
            "ed._domainkey.sender.example", "_dmarc.sender.example"} <= queried


async def test_a_forged_from_of_a_reject_domain_is_quarantined_as_spoofed(mx: MxEnv) -> None:
    # evil.example's SPF passes for our client, but the From is bank.example's.
    message = make_message(sender="security@bank.example", subject="Verify your account")
    await mx.send(message, mail_from="bounce@evil.example")
    assert mx.inbox(TARO) == []
    assert quarantine_reasons(mx) == ["spoofed"]
    [stored] = mx.quarantine_files(TARO)
    results = our_results(stored)
    assert "spf=pass smtp.mailfrom=bounce@evil.example" in results
    assert "dmarc=fail (p=reject) header.from=bank.example" in results
    assert "reason=spoofed" in str(parse(stored)["X-Mailplane-Verdict"])


async def test_the_digest_names_a_spoofed_message_in_japanese_first(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=True, spam_quarantine=True, spam_notify=True)
    await mx.send(make_message(sender="security@bank.example", subject="Verify"),
                  mail_from="x@evil.example")
    assert send_quarantine_digests(mx.settings, mx.session_factory, mx.clock) == 1
    [digest] = mx.inbox(TARO)
    body = parse(digest).get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "なりすまし / spoofed sender" in text and "Verify" in text
    assert text.index("なりすまし") < text.index("spoofed")


async def test_the_allow_list_does_not_release_a_forged_sender(mx: MxEnv) -> None:
    mx.set_list(TARO, "allow_address", ["bank.example"])
    await mx.send(make_message(sender="security@bank.example"), mail_from="x@evil.example")
    assert mx.inbox(TARO) == []
    assert quarantine_reasons(mx) == ["spoofed"]
    # ... while the real bank, authenticated, reaches the inbox.
    await mx.send(signed(BANK, sender="security@bank.example"),
                  mail_from="security@bank.example")
    assert len(mx.inbox(TARO)) == 1


async def test_dmarc_reject_with_failing_spf_and_no_signature_is_quarantined(
        mx: MxEnv) -> None:
    await mx.send(make_message(sender="alice@q.example"), mail_from="alice@q.example")
    assert quarantine_reasons(mx) == ["spoofed"]
    results = our_results(mx.quarantine_files(TARO)[0])
    assert "spf=fail" in results and "dkim=none" in results
    assert "dmarc=fail (p=quarantine) header.from=q.example" in results


async def test_a_policy_in_testing_is_applied_one_level_lower(mx: MxEnv) -> None:
    # t=y with p=quarantine: none is applied (RFC 9989 §4.7) → delivered, marked.
    await mx.send(make_message(sender="alice@testing.example"), mail_from="x@evil.example")
    [stored] = mx.inbox(TARO)
    assert "dmarc=fail (p=quarantine t=y)" in our_results(stored)


async def test_a_broken_signature_is_dkim_fail_and_delivered_when_spf_aligns(
        mx: MxEnv) -> None:
    message = SENDER.sign(make_message(sender="alice@sender.example"))
    tampered = message.replace(b"How are you?", b"Send me your password.")
    await mx.send(tampered, mail_from="alice@sender.example")
    [stored] = mx.inbox(TARO)
    results = our_results(stored)
    assert "dkim=fail header.d=sender.example" in results
    assert "spf=pass" in results and "dmarc=pass" in results  # SPF aligns: DMARC passes


async def test_a_broken_signature_of_a_reject_domain_without_spf_is_spoofed(
        mx: MxEnv) -> None:
    message = BANK.sign(make_message(sender="security@bank.example"))
    await mx.send(message.replace(b"How are you?", b"Pay now."),
                  mail_from="security@evil.example")
    assert quarantine_reasons(mx) == ["spoofed"]


async def test_spf_fail_alone_is_delivered_and_marked(mx: MxEnv, zone_dns: DnsStub) -> None:
    zone_dns.zone["strict.example"] = {"TXT": ["v=spf1 ip4:192.0.2.9 -all"]}
    await mx.send(make_message(sender="alice@strict.example"),
                  mail_from="alice@strict.example")
    [stored] = mx.inbox(TARO)
    results = our_results(stored)
    assert "spf=fail smtp.mailfrom=alice@strict.example" in results
    assert "dmarc=none" in results


async def test_unauthenticated_mail_claiming_a_hosted_domain_is_spoofed(mx: MxEnv) -> None:
    # Customers' mail comes through submission: a hosted From on the MX must prove
    # itself, whatever DMARC record the operator published (p=none here).
    mx.add_address("hanako@e07.example.net")
    await mx.send(make_message(sender="hanako@e07.example.net"), mail_from="x@evil.example")
    await mx.send(make_message(sender="alice@loose.example"),
                  mail_from="hanako@e07.example.net")
    assert quarantine_reasons(mx) == ["spoofed", "spoofed"]
    notes = [str(parse(m)["X-Mailplane-Verdict"]) for m in mx.quarantine_files(TARO)]
    assert all("spoofing=hosted:" in n for n in notes), notes


async def test_our_own_signature_proves_a_hosted_sender(mx: MxEnv, zone_dns: DnsStub) -> None:
    # Mail we sent out (signed with the base domain, as DKIM signing does) that comes
    # back through a forwarder that broke SPF is not a forgery.
    ours = SendingDomain("example.net", spf=None, dmarc=None)
    ours.publish(zone_dns.zone)
    mx.add_address("hanako@e07.example.net")
    await mx.send(ours.sign(make_message(sender="hanako@e07.example.net")),
                  mail_from="srs0=abc=de=e07.example.net=hanako@fwd.example")
    [stored] = mx.inbox(TARO)
    assert "dkim=pass header.d=example.net" in our_results(stored)


@pytest.mark.parametrize("forged", [
    f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=bank.example",
    f"Authentication-Results: (trust me) {AUTHSERV.upper()}.; spf=pass",
    f'Authentication-Results: "{AUTHSERV}" 1; dkim=pass',
    f"authentication-results :\r\n {AUTHSERV};\r\n\tdmarc=pass",
])
async def test_forged_results_in_our_name_are_removed(mx: MxEnv, forged: str) -> None:
    foreign = "Authentication-Results: mx.other.example; spf=pass smtp.mailfrom=a@b.example"
    message = make_message(extra_headers=f"{forged}\r\n{foreign}\r\n")
    await mx.send(message)
    [stored] = mx.inbox(TARO)
    assert forged.encode() not in stored
    results = our_results(stored)  # exactly one with our authserv-id: ours
    assert "spf=" in results and "dmarc=" in results
    assert foreign.encode() in stored  # another ADMD's claim is left alone


async def test_an_arc_chain_is_verified(mx: MxEnv) -> None:
    original = signed(SENDER)
    sealed = FORWARDER.arc_seal(original, results="spf=pass smtp.mailfrom=sender.example")
    await mx.send(sealed, mail_from="list-bounces@lists.example")
    # A seal that lies about the chain before it (cv=pass at i=1) breaks the chain.
    broken = FORWARDER.arc_seal(original, results="dkim=pass").replace(
        b"cv=none", b"cv=pass", 1)
    await mx.send(broken, mail_from="list-bounces@lists.example")
    first, second = (our_results(m) for m in mx.inbox(TARO))
    assert "arc=pass" in first
    assert "arc=fail" in second
    # The forwarder's own ARC headers and results are kept (they are its claims).
    assert all(b"ARC-Seal: i=1" in m for m in mx.inbox(TARO))


async def test_more_signatures_than_the_limit_are_not_all_verified(mx: MxEnv) -> None:
    message = make_message(sender="alice@sender.example")
    for _ in range(8):
        message = SENDER.sign(message, ed25519=True)
    await mx.send(message, mail_from="alice@sender.example")
    assert our_results(mx.inbox(TARO)[0]).count("dkim=pass") == 5  # the default limit


async def test_parallel_sessions_are_each_judged_on_their_own(mx: MxEnv) -> None:
    """16 sessions at once (asyncio clients: the checks of one must never leak into
    another's results)."""
    good = signed(SENDER)
    forged = make_message(sender="security@bank.example")

    async def send(n: int) -> None:
        await aiosmtplib.send(good if n % 2 else forged,
                              sender="alice@sender.example" if n % 2 else "x@evil.example",
                              recipients=[TARO], hostname="127.0.0.1", port=mx.port,
                              local_hostname="client.example", start_tls=False, timeout=30)

    await asyncio.gather(*(send(n) for n in range(16)))
    assert len(mx.inbox(TARO)) == 8
    assert all("dmarc=pass" in our_results(m) for m in mx.inbox(TARO))
    assert quarantine_reasons(mx) == ["spoofed"] * 8


@pytest.fixture
def silent_dns() -> Iterator[DnsStub]:
    with DnsStub(silent=True) as stub:
        yield stub


class TestSilentDns:
    """A DNS server that never answers: every check ends in temperror within the
    budget and the mail is delivered, never deferred."""

    @pytest.fixture
    def mx_settings_overrides(self, silent_dns: DnsStub) -> dict[str, Any]:
        return {"authentication": {"nameserver": f"{silent_dns.host}:{silent_dns.port}",
                                   "time_budget_seconds": 0.5}}

    async def test_timeouts_are_temperror_and_the_mail_is_delivered(
            self, mx: MxEnv, silent_dns: DnsStub) -> None:
        message = SENDER.sign(make_message(sender="alice@sender.example"))
        await mx.send(message, mail_from="alice@sender.example")
        # Even a hosted sender: our DNS trouble never quarantines anyone's mail.
        await mx.send(make_message(sender="hanako@e07.example.net"),
                      mail_from="hanako@e07.example.net")
        first, second = mx.inbox(TARO)
        results = our_results(first)
        assert "spf=temperror" in results
        assert "dkim=temperror header.d=sender.example" in results
        assert "dmarc=temperror" in results
        assert "spf=temperror" in our_results(second)
        assert quarantine_reasons(mx) == []
        assert silent_dns.queries  # it was asked


class TestOffline:
    """``nameserver = "none"`` (the demo): nothing looked up, everything delivered,
    forged results still removed."""

    @pytest.fixture
    def mx_settings_overrides(self) -> dict[str, Any]:
        return {"authentication": {"nameserver": "none"}}

    async def test_results_are_none_at_once_and_nothing_is_quarantined(self, mx: MxEnv) -> None:
        forged = f"Authentication-Results: {AUTHSERV}; dmarc=pass\r\n"
        await mx.send(make_message(sender="hanako@e07.example.net", extra_headers=forged),
                      mail_from="hanako@e07.example.net")
        [stored] = mx.inbox(TARO)
        assert our_results(stored).startswith(f"{AUTHSERV}; none")
        assert forged.encode() not in stored



async def test_a_field_named_like_ours_without_a_colon_is_no_reason_to_defer(
        mx: MxEnv) -> None:
    """A line ``Authentication-Results`` with no colon is a malformed field, not ours: it
    stays, and the message is delivered (reading its value used to raise: 451 for ever)."""
    await mx.send(make_message(extra_headers="Authentication-Results\r\n"))
    [stored] = mx.inbox(TARO)
    assert b"\r\nAuthentication-Results\r\n" in stored
