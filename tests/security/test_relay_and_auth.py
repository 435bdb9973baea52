"""No open relay, no AUTH in the clear, one lockout for every listener (issue 7; SPEC §1,
§3; RFC 5321 §3.6.2, RFC 3207 §4, RFC 2595 §2)."""

from __future__ import annotations

import base64
import poplib
import smtplib
import ssl

import pytest

from mailplane.mail.message import has_bare_line_ending
from mailplane.mailstore.paths import mailbox_dir
from tests.factories.security import SecureNode

FOREIGN_RECIPIENTS = [
    "victim@example.org",
    '"a@b"@example.org',
    "a%b@example.org",
    "a%victim.example.org@s01.example.net",
    "@x.example:a@example.org",
    "a@example.org@s01.example.net",
    "victim@example.org.",
    "victim@[127.0.0.1]",
    "victim@example.net",
    "victim@sub.s01.example.net",
]


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.mark.parametrize("recipient", FOREIGN_RECIPIENTS)
@pytest.mark.parametrize("sender", ["", "stranger@example.org", "user@s01.example.net"])
def test_mx_refuses_foreign_recipients_at_rcpt_from_any_sender(
    secure_node: SecureNode, sender: str, recipient: str,
) -> None:
    with smtplib.SMTP("127.0.0.1", secure_node.node.ports["mx"], timeout=10) as smtp:
        smtp.ehlo("relay-test.example")
        assert smtp.mail(sender)[0] == 250
        code, text = smtp.docmd("RCPT", f"TO:<{recipient}>")
        assert 500 <= code < 600, (recipient, code, text)


def test_submission_without_auth_refuses_foreign_recipients(secure_node: SecureNode) -> None:
    with smtplib.SMTP("127.0.0.1", secure_node.node.ports["sub"], timeout=10) as smtp:
        smtp.starttls(context=_tls())
        smtp.ehlo("relay-test.example")
        code, _ = smtp.mail("user@s01.example.net")
        if code == 250:
            code, _ = smtp.rcpt("victim@example.org")
        assert 500 <= code < 600


@pytest.mark.parametrize("payload", [
    b"Subject: x\r\n\r\nbody\n.\nMAIL FROM:<a@b.example>\r\n.\r\n",
    b"Subject: x\r\n\r\nbody\r\n.\nRCPT TO:<v@example.org>\r\n.\r\n",
    b"Subject: x\r\n\r\nbody\r.\rDATA\r\n.\r\n",
])
def test_submission_never_lets_a_payload_smuggle_a_second_message(
    secure_node: SecureNode, payload: bytes,
) -> None:
    """SMTP smuggling through submission: DATA ends only at ``<CRLF>.<CRLF>``.  A bare LF
    is normalised as on the MX (SPEC §8a, issue 22 item 8) — the fake end and the
    "commands" after it stay text inside the one message; a bare CR is refused 550 5.6.0."""
    tenant = secure_node.tenants["C1"]
    new = mailbox_dir(secure_node.node.state_dir / "mail", tenant.address) / "new"
    before = set(new.iterdir()) if new.is_dir() else set()
    with smtplib.SMTP("127.0.0.1", secure_node.node.ports["sub"], timeout=10) as smtp:
        smtp.starttls(context=_tls())
        smtp.login(tenant.pop_account, tenant.password)
        assert smtp.mail(tenant.address)[0] == 250
        assert smtp.rcpt(tenant.address)[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(f"From: {tenant.address}\r\n".encode() + payload)
        code, text = smtp.getreply()
        assert smtp.noop()[0] == 250  # one transaction, nothing smuggled after it
    added = (set(new.iterdir()) if new.is_dir() else set()) - before
    if b"\r." in payload:
        assert code == 550 and text.startswith(b"5.6.0"), text
        assert added == set()
        return
    assert code == 250 and text.startswith(b"2.0.0"), text
    [stored] = [path.read_bytes() for path in added]
    smuggled = payload.split(b"\n.\n" if b"\n.\n" in payload else b"\r\n.\n")[1]
    assert smuggled.split(b"\r\n")[0] + b"\r\n" in stored  # text, not a command
    assert not has_bare_line_ending(stored)


def test_submission_refuses_auth_before_starttls(secure_node: SecureNode) -> None:
    tenant = secure_node.tenants["C1"]
    token = base64.b64encode(f"\0{tenant.pop_account}\0{tenant.password}".encode()).decode()
    with smtplib.SMTP("127.0.0.1", secure_node.node.ports["sub"], timeout=10) as smtp:
        smtp.ehlo("client.example")
        assert "auth" not in smtp.esmtp_features
        code, _ = smtp.docmd("AUTH", f"PLAIN {token}")
        assert code in (530, 538)  # RFC 3207 §4 (530) or RFC 5248 5.7.11 (538)


def test_pop3_refuses_user_pass_and_auth_before_stls(secure_node: SecureNode) -> None:
    tenant = secure_node.tenants["C1"]
    pop = poplib.POP3("127.0.0.1", secure_node.node.ports["pop3"], timeout=10)
    try:
        with pytest.raises(poplib.error_proto):
            pop.user(tenant.pop_account)
        token = base64.b64encode(f"\0{tenant.pop_account}\0{tenant.password}".encode())
        with pytest.raises(poplib.error_proto):
            pop._shortcmd("AUTH PLAIN " + token.decode())  # type: ignore[attr-defined]
    finally:
        pop.close()


