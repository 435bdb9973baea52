"""What the outbound worker sends to a remote host carries our DKIM signatures — RSA-2048
and Ed25519, relaxed/relaxed, ``d=`` aligned with ``From:`` — checked by dkimpy's own
``dkimverify`` in a separate process against the loopback DNS stub serving the records
``mailplane dns-records`` prints (SPEC §8b)."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from collections.abc import Callable
from datetime import timedelta

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailplane import metrics
from mailplane.signing import outbound as signing_outbound
from mailplane.signing.keys import key_path, public_key_of, txt_value
from mailplane.signing.outbound import OutboundSigner, SigningUnavailable
from mailplane.signing.policy import OVERSIGNED, signing_domain
from tests.factories.dkimpy_cli import arcverify, dkimverify
from tests.factories.dns import DnsStub
from tests.factories.flow import FLOW_MX_SETTINGS, Flow
from tests.factories.outbound import CaptureFactory, OutboundEnv, WorkerFactory
from tests.factories.queue import STANDARD_ZONE, job, stage
from tests.factories.signing import SigningEnv, publish, txt_records

SUBMITTED = (b"From: Taro <taro@e06.example.net>\r\nTo: bob@dest.test\r\n"
             b"Subject: =?UTF-8?B?5Lya6K2w44Gu5Lu2?=\r\nDate: Mon, 23 Nov 2026 12:00:00 +0900\r\n"
             b"Message-ID: <s1@e06.example.net>\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n"
             b"\r\n" + "明日の会議は10時からです。\r\n".encode() + b"  trailing space  \r\n\r\n")


def _signing_env(env: OutboundEnv) -> SigningEnv:
    return SigningEnv(env.settings, env.session_factory, env.clock)


def _ready(env: OutboundEnv, dns_stub: DnsStub) -> list[str]:
    """Active Ed25519 + RSA selectors, their records (from dns-records) in the stub."""
    signing = _signing_env(env)
    names = signing.selectors()
    dns_stub.zone.update(STANDARD_ZONE)
    publish(dns_stub, txt_records(signing.zone_text()))
    return names


def signatures(data: bytes) -> list[dict[bytes, bytes]]:
    """The tags of each DKIM-Signature, top first."""
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    return [dkim.util.parse_tag_value(str(value).encode().replace(b"\n", b"").replace(
        b"\r", b"")) for value in parsed.get_all("DKIM-Signature", [])]


def assert_verifies(dns_stub: DnsStub, data: bytes, count: int) -> None:
    for index in range(count):
        checked = dkimverify(dns_stub, data, index)
        assert checked.returncode == 0 and "signature ok" in checked.stdout, (
            index, checked.stdout, checked.stderr)


@pytest.mark.parametrize(("kind", "mail_from", "message", "domain"), [
    ("submission", "taro@e06.example.net", SUBMITTED, b"example.net"),
    ("auto_reply", "", b"From: hanako@e07.example.org\r\nTo: alice@sender.test\r\n"
                       b"Subject: Auto: hi\r\nAuto-Submitted: auto-replied\r\n\r\naway\r\n",
     b"example.org"),
])
async def test_mail_leaving_the_platform_is_signed_rsa_and_ed25519_by_its_from_base_domain(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory, kind: str, mail_from: str, message: bytes, domain: bytes,
) -> None:
    names = _ready(outbound_env, dns_stub)
    destination = capture_mx("127.0.0.2")
    stage(outbound_env, recipients=["bob@dest.test"], mail_from=mail_from, message=message,
          kind=kind)
    await make_worker(outbound_env).run_once()

    [sent] = destination.envelopes
    assert sent.data.endswith(message)  # our headers on top, the message unchanged
    tags = signatures(sent.data)
    assert [(t[b"a"], t[b"d"], t[b"c"]) for t in tags] == [
        (b"rsa-sha256", domain, b"relaxed/relaxed"),
        (b"ed25519-sha256", domain, b"relaxed/relaxed")]
    assert sorted(t[b"s"].decode() for t in tags) == sorted(names)
    assert_verifies(dns_stub, sent.data, 2)


async def test_the_originator_headers_are_oversigned_so_an_added_one_breaks_the_signature(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _ready(outbound_env, dns_stub)
    destination = capture_mx("127.0.0.2")
    stage(outbound_env, recipients=["bob@dest.test"], message=SUBMITTED, kind="submission",
          mail_from="taro@e06.example.net")
    await make_worker(outbound_env).run_once()
    signed = destination.envelopes[0].data
    signed_names = signatures(signed)[0][b"h"].replace(b" ", b"").split(b":")
    for name in (b"from", b"to", b"subject", b"date", b"message-id", b"cc", b"reply-to"):
        assert name in OVERSIGNED
        assert signed_names.count(name) == (2 if name not in (b"cc", b"reply-to") else 1)
    assert b"received" not in signed_names

    # Hops add trace headers on top: still verifies.
    relayed = b"Received: from mx.dest.test by mx2.dest.test; Mon, 23 Nov 2026\r\n" + signed
    assert_verifies(dns_stub, relayed, 2)
    head, _, body = signed.partition(b"\r\n\r\n")
    for forged in (head + b"\r\nSubject: URGENT: your password\r\n\r\n" + body,
                   head + b"\r\nCc: victim@dest.test\r\n\r\n" + body,
                   head + b"\r\n\r\n" + body.replace("10時".encode(), "11時".encode())):
        for index in (0, 1):
            assert dkimverify(dns_stub, forged, index).returncode != 0


async def test_a_forward_gets_our_signature_next_to_the_original_one_kept_intact(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _ready(outbound_env, dns_stub)
    sender_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dns_stub.zone["sel._domainkey.sender.test"] = {"TXT": [txt_value("rsa", public_key_of(
        sender_key))]}
    original = (b"From: Alice <alice@sender.test>\r\nTo: taro_1@e06.example.org\r\n"
                b"Subject: hi\r\nDate: Mon, 23 Nov 2026 12:00:00 +0900\r\n"
                b"Message-ID: <o1@sender.test>\r\n\r\nforward me\r\n")
    pem = sender_key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption())
    original = dkim.sign(original, b"sel", b"sender.test", pem,
                         canonicalize=(b"relaxed", b"simple")) + original
    forwarded = (b"Delivered-To: taro_1@e06.example.org\r\nReceived: from mx.sender.test by "
                 b"mx.example.net; Mon, 23 Nov 2026 12:00:01 +0900\r\n" + original)
    destination = capture_mx("127.0.0.2")
    stage(outbound_env, recipients=["bob@dest.test"], kind="forward",
          mail_from="SRS0=abcd=TT=sender.test=alice@srs.mailplane.test", message=forwarded)
    await make_worker(outbound_env).run_once()

    [sent] = destination.envelopes
    assert sent.data.endswith(forwarded)
    tags = signatures(sent.data)
    # Ours by the forwarding address's base domain (example.org, not example.net), then
    # the sender's, untouched.
    assert [(t[b"d"], t[b"a"]) for t in tags] == [
        (b"example.org", b"rsa-sha256"), (b"example.org", b"ed25519-sha256"),
        (b"sender.test", b"rsa-sha256")]
    assert_verifies(dns_stub, sent.data, 3)
    assert b"ARC-Seal" not in sent.data  # ARC is off by default


async def test_arc_sealing_of_forwards_is_an_option(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(dkim={"arc_seal_forwards": True},
                            mx={"hostname": "mx.example.net"})
    _ready(env, dns_stub)
    message = (b"Delivered-To: taro_1@e06.example.net\r\n"
               b"Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=sender.test\r\n"
               b"From: alice@sender.test\r\nTo: taro_1@e06.example.net\r\nSubject: hi\r\n"
               b"Date: Mon, 23 Nov 2026 12:00:00 +0900\r\n\r\nforward me\r\n")
    destination = capture_mx("127.0.0.2")
    stage(env, recipients=["bob@dest.test"], kind="forward", message=message,
          mail_from="SRS0=abcd=TT=sender.test=alice@srs.mailplane.test")
    stage(env, recipients=["carol@dest.test"], kind="submission", message=SUBMITTED,
          mail_from="taro@e06.example.net")
    await make_worker(env).run_once()

    by_rcpt = {e.rcpt_tos[0]: e.data for e in destination.envelopes}
    sealed = by_rcpt["bob@dest.test"]
    assert sealed.count(b"ARC-Seal: i=1;") == 1
    assert b"ARC-Authentication-Results: i=1; mx.example.net;" in sealed
    verdict = arcverify(dns_stub, sealed)
    # dkimpy prints the bytes repr: "arc verification: cv=b'pass' success".
    assert re.search(r"cv=b?'?pass'? success", verdict.stdout), (verdict.stdout, verdict.stderr)
    assert_verifies(dns_stub, sealed, 2)
    assert b"ARC-Seal" not in by_rcpt["carol@dest.test"]  # only forwards are sealed


def test_the_signing_domain_is_the_base_domain_aligned_with_from() -> None:
    bases = ("example.net", "example.org", "mail.example.org")

    def domain(from_: str, *, delivered_to: str = "", mail_from: str = "") -> str:
        headers = [(b"From", f" {from_}\r\n".encode())]
        if delivered_to:
            headers.insert(0, (b"Delivered-To", f" {delivered_to}\r\n".encode()))
        return signing_domain(headers, mail_from=mail_from, base_domains=bases)

    assert domain("Taro <taro@e06.example.net>") == "example.net"  # relaxed alignment
    assert domain("=?UTF-8?B?5aSq6YOO?= <TARO@E06.Example.ORG>") == "example.org"
    assert domain("x@a01.mail.example.org") == "mail.example.org"  # the closest base
    assert domain("MAILER-DAEMON@mx.example.net") == "example.net"  # DSNs, notices
    assert domain("alice@sender.test", delivered_to="taro@e06.example.org") == "example.org"
    assert domain("alice@sender.test",
                  mail_from="SRS0=x=TT=sender.test=alice@srs.example.org") == "example.org"
    assert domain("alice@sender.test") == "example.net"  # the first base domain
    assert domain("undisclosed-recipients:;") == "example.net"
    assert domain("evil@example.net.attacker.test", delivered_to="x@notexample.org") == \
        "example.net"


async def test_hosted_recipients_get_the_message_unsigned_remote_ones_signed(
        flow: Flow) -> None:
    signing = SigningEnv(flow.mx.settings, flow.mx.session_factory, flow.mx.clock)
    signing.selectors()
    publish(flow.dns, txt_records(signing.zone_text()))
    flow.mx.add_address("hanako@e07.example.net")
    destination = flow.remote("dest.test")
    flow.set_forwarding("taro_1@e06.example.net", ["hanako@e07.example.net", "bob@dest.test"],
                        keep_copy=False)
    await flow.mx.send(b"From: alice@sender.test\r\nTo: taro_1@e06.example.net\r\n"
                       b"Subject: hi\r\n\r\nforward me\r\n")
    await flow.drain()

    [local] = flow.mx.inbox("hanako@e07.example.net")
    assert b"DKIM-Signature" not in local  # never left the platform
    [remote] = destination.envelopes
    assert [t[b"d"] for t in signatures(remote.data)] == [b"example.net", b"example.net"]
    assert_verifies(flow.dns, remote.data, 2)


@pytest.fixture
def mx_settings_overrides() -> dict[str, object]:
    return FLOW_MX_SETTINGS


async def test_without_an_active_selector_mail_leaves_unsigned_and_is_counted(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    dns_stub.zone.update(STANDARD_ZONE)
    destination = capture_mx("127.0.0.2")
    before = metrics.OUTBOUND_SIGNING.labels("unsigned")._value.get()
    job_id = stage(outbound_env, recipients=["bob@dest.test"], message=SUBMITTED,
                   kind="submission")
    await make_worker(outbound_env).run_once()
    assert destination.envelopes[0].data == SUBMITTED
    assert job(outbound_env, job_id).status == "sent"
    assert metrics.OUTBOUND_SIGNING.labels("unsigned")._value.get() == before + 1


async def test_a_key_missing_on_this_node_keeps_the_mail_queued_never_unsigned(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    names = _ready(outbound_env, dns_stub)
    rsa_name = next(n for n in names if n.endswith("rsa"))
    key_file = key_path(outbound_env.settings.dkim_keys_dir, rsa_name)
    kept = key_file.read_bytes()
    key_file.unlink()
    destination = capture_mx("127.0.0.2")
    job_id = stage(outbound_env, recipients=["bob@dest.test"], message=SUBMITTED,
                   kind="submission", mail_from="taro@e06.example.net")
    await make_worker(outbound_env).run_once()
    assert destination.envelopes == []
    queued = job(outbound_env, job_id)
    assert queued.status == "queued" and "DKIM signing unavailable" in queued.last_error
    assert rsa_name in queued.last_error

    # The key is back (the shared volume remounted): the retry goes out signed.
    key_file.write_bytes(kept)
    key_file.chmod(0o600)
    outbound_env.clock.advance(timedelta(hours=1))
    await make_worker(outbound_env).run_once()
    assert len(signatures(destination.envelopes[0].data)) == 2


async def test_on_error_unsigned_sends_with_the_keys_it_has(
    make_outbound_env: Callable[..., OutboundEnv], dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    env = make_outbound_env(dkim={"on_error": "unsigned"})
    names = _ready(env, dns_stub)
    key_path(env.settings.dkim_keys_dir, next(n for n in names if n.endswith("rsa"))).unlink()
    destination = capture_mx("127.0.0.2")
    stage(env, recipients=["bob@dest.test"], message=SUBMITTED, kind="submission")
    await make_worker(env).run_once()
    [sent] = destination.envelopes
    assert [t[b"a"] for t in signatures(sent.data)] == [b"ed25519-sha256"]
    assert_verifies(dns_stub, sent.data, 1)


async def test_signing_runs_in_a_worker_thread_not_on_the_event_loop(
    outbound_env: OutboundEnv, dns_stub: DnsStub, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _ready(outbound_env, dns_stub)
    threads: list[int] = []
    real = signing_outbound.stamp

    def spy(*args: object, **kwargs: object) -> bytes:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(signing_outbound, "stamp", spy)
    signer = OutboundSigner(outbound_env.settings, outbound_env.session_factory)
    signed = await signer.sign(SUBMITTED, mail_from="taro@e06.example.net", kind="submission")
    assert signed.endswith(SUBMITTED) and threads and threads[0] != threading.get_ident()


async def test_a_node_follows_an_activation_made_elsewhere_within_refresh_seconds(
    make_outbound_env: Callable[..., OutboundEnv],
) -> None:
    env = make_outbound_env(dkim={"refresh_seconds": 60})
    now = [1000.0]
    signer = OutboundSigner(env.settings, env.session_factory, monotonic=lambda: now[0])
    assert (await signer.key_ring()).keys == ()
    names = _signing_env(env).selectors()  # "another node" activates
    assert (await signer.key_ring()).keys == ()  # read a moment ago
    now[0] += 60
    assert sorted(k.selector for k in (await signer.key_ring()).keys) == sorted(names)


async def test_selectors_unknown_because_the_database_is_away_keep_mail_queued(
    make_outbound_env: Callable[..., OutboundEnv],
) -> None:
    env = make_outbound_env()
    env.settings.dkim_keys_dir.mkdir(parents=True, exist_ok=True)

    def broken() -> object:
        from sqlalchemy.exc import OperationalError

        raise OperationalError("SELECT", {}, Exception("database unavailable"))

    signer = OutboundSigner(env.settings, broken)  # type: ignore[arg-type]
    with pytest.raises(SigningUnavailable, match="database unavailable"):
        await signer.sign(SUBMITTED, mail_from="taro@e06.example.net", kind="submission")


async def test_a_message_with_thousands_of_headers_gets_a_bounded_signature_that_verifies(
    outbound_env: OutboundEnv, dns_stub: DnsStub, capture_mx: CaptureFactory,
    make_worker: WorkerFactory,
) -> None:
    _ready(outbound_env, dns_stub)
    destination = capture_mx("127.0.0.2")
    flood = b"".join(b"To: r%d@dest.test\r\n" % n for n in range(3000))
    hostile = (b"From: alice@sender.test\r\n" + flood + b"Subject: many\r\n\r\nhi\r\n")
    stage(outbound_env, recipients=["bob@dest.test"], kind="forward", message=hostile,
          mail_from="SRS0=abcd=TT=sender.test=alice@srs.mailplane.test")
    await make_worker(outbound_env).run_once()
    [sent] = destination.envelopes
    ours = sent.data[:len(sent.data) - len(hostile)]
    assert len(ours) < 4096
    assert signatures(sent.data)[0][b"h"].replace(b" ", b"").split(b":").count(b"to") == 16
    assert_verifies(dns_stub, sent.data, 2)
