"""A customer cannot speak in our name (RFC 8601 §5, SPEC §8b): an ``Authentication-Results``
with our authserv-id in a submitted message — ``dkim=pass; dmarc=pass`` from a stolen POP
password, or kept by a client that redirects a message it received — is removed before
the message is stored for a hosted recipient or queued for a remote one, however it is
spelled; other ADMDs' headers stay.  What leaves the platform still carries a DKIM
signature that dkimpy verifies.  Real submission listener, real queue worker, a capture
MX found through the DNS stub."""

from __future__ import annotations

import asyncio
import email
import email.policy

import pytest

from mailplane.config.sections import AuthenticationConfig
from mailplane.mailauth.header import authserv_id_of
from mailplane.outbound.worker import OutboundWorker
from mailplane.smtp.submission_server import SubmissionServer
from tests.factories.dkimpy_cli import dkimverify
from tests.factories.dns import DnsStub
from tests.factories.outbound import CaptureFactory
from tests.factories.queue import STANDARD_ZONE
from tests.factories.signing import SigningEnv, publish, txt_records
from tests.factories.submission import (
    NEIGHBOUR,
    SENDER,
    SubmissionEnv,
    auth_plain,
    make_message,
    open_tls,
    send_expect,
)

REMOTE = "bob@dest.test"
OTHER_ADMD = "Authentication-Results: mx.google.com; spf=pass smtp.mailfrom=e06.example.net"


def forged(authserv_id: str) -> list[str]:
    """Our authserv-id, spelled every way RFC 8601 allows."""
    upper = authserv_id.upper()
    return [
        f"Authentication-Results: {authserv_id}; dkim=pass header.d=bank.example; dmarc=pass",
        f"authentication-results: (verified) {upper}.;\r\n\tdmarc=pass header.from=bank.example",
        f'AUTHENTICATION-RESULTS: "{authserv_id}" 1; spf=pass smtp.mailfrom=bank.example',
    ]


def with_headers(headers: list[str]) -> bytes:
    head, _, body = make_message(to=f"{NEIGHBOUR}, {REMOTE}").partition(b"\r\n\r\n")
    return "\r\n".join(headers).encode() + b"\r\n" + head + b"\r\n\r\n" + body


def ours(data: bytes, authserv_id: str) -> list[str]:
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    values = [str(v) for v in parsed.get_all("Authentication-Results", [])]
    return [v for v in values if authserv_id_of(v.encode()) == authserv_id]


@pytest.mark.parametrize("configured", ["", "auth.example.net"])
async def test_forged_authentication_results_never_reach_a_mailbox_or_a_remote_receiver(
    sub: SubmissionEnv, dns_stub: DnsStub, capture_mx: CaptureFactory, mx_port: int,
    configured: str,
) -> None:
    server: SubmissionServer = sub.server
    authserv_id = configured or sub.settings.mx.hostname  # "" = mx.hostname
    if configured:
        server = await sub.start(authentication=AuthenticationConfig(authserv_id=configured))
    signing = SigningEnv(sub.settings, sub.session_factory, sub.clock)
    signing.selectors()
    dns_stub.zone.update(STANDARD_ZONE)
    publish(dns_stub, txt_records(signing.zone_text()))
    destination = capture_mx("127.0.0.2")
    message = with_headers([*forged(authserv_id), OTHER_ADMD])
    assert len(ours(message, authserv_id)) == 3

    def submit() -> tuple[int, str]:
        with open_tls(server.tls_port) as client:
            assert auth_plain(client, SENDER)[0] == 235
            return send_expect(client, message, rcpt_tos=(NEIGHBOUR, REMOTE))

    assert await asyncio.to_thread(submit) == (250, "accepted")

    # The hosted neighbour's copy, stored by submission's local delivery.
    [stored] = sub.inbox(NEIGHBOUR)
    assert ours(stored, authserv_id) == []
    assert OTHER_ADMD.encode() in stored  # another ADMD's claim is not ours to hide

    # The remote copy, queued, signed and sent by the worker.
    worker = OutboundWorker(sub.settings, sub.session_factory, sub.clock, worker_id="w1",
                            dns_nameserver=dns_stub.address, smtp_port_override=mx_port)
    assert await worker.run_once() == 1
    [sent] = destination.envelopes
    assert sent.rcpt_tos == [REMOTE]
    assert ours(sent.data, authserv_id) == []
    assert OTHER_ADMD.encode() in sent.data
    for index in (0, 1):  # RSA and Ed25519, over the cleaned message
        checked = dkimverify(dns_stub, sent.data, index)
        assert checked.returncode == 0 and "signature ok" in checked.stdout, checked.stdout
