"""Brute-force lockout works across listeners (issue 7; SPEC §1): failures counted on
POP3 lock submission AUTH and the other way round — for the IP that failed; the owner's
clean IP still logs in (issue 15, SPEC §8a).  Each test speaks from its own loopback
addresses so the per-IP counter of one test does not lock the other.  Each failure is another
password: the same wrong password again is no new guess and counts once (issue 22)."""

from __future__ import annotations

import poplib
import smtplib
import socket
import ssl
from typing import Any

from tests.factories.security import SecureNode


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Pop3From(poplib.POP3_SSL):
    source = "127.0.0.1"

    def _create_socket(self, timeout: Any) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined, no-any-return]


def _pop_login(secure_node: SecureNode, account: str, password: str, source: str) -> bytes:
    _Pop3From.source = source
    pop = _Pop3From("127.0.0.1", secure_node.node.ports["pop3tls"], context=_tls(),
                    timeout=10)
    try:
        pop.user(account)
        return pop.pass_(password)
    except poplib.error_proto as exc:
        return bytes(exc.args[0])
    finally:
        pop.close()


def _smtp_login(secure_node: SecureNode, account: str, password: str, source: str) -> int:
    with smtplib.SMTP_SSL("127.0.0.1", secure_node.node.ports["subtls"], context=_tls(),
                          timeout=10, source_address=(source, 0)) as smtp:
        try:
            smtp.login(account, password)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
        except smtplib.SMTPResponseException as exc:
            return exc.smtp_code
        return 235


def test_pop3_failures_lock_submission_auth(secure_node: SecureNode) -> None:
    tenant = secure_node.tenants["C1"]
    for n in range(3):
        reply = _pop_login(secure_node, tenant.pop_account, f"wrong-password{n}", "127.0.0.2")
        assert b"[AUTH]" in reply
    # The right password now fails on the OTHER listener from the failing IP: the account
    # is locked for it; from an IP with no failures the owner still logs in.
    assert _smtp_login(secure_node, tenant.pop_account, tenant.password, "127.0.0.2") == 454
    assert _smtp_login(secure_node, tenant.pop_account, tenant.password, "127.0.0.3") == 235


def test_submission_failures_lock_pop3(secure_node: SecureNode) -> None:
    tenant = secure_node.tenants["C2"]
    for n in range(3):
        code = _smtp_login(secure_node, tenant.pop_account, f"wrong-password{n}", "127.0.0.4")
        assert code in (535, 454)
    reply = _pop_login(secure_node, tenant.pop_account, tenant.password, "127.0.0.4")
    assert b"[AUTH]" in reply or b"[SYS/TEMP]" in reply or b"lock" in reply.lower(), reply
    assert reply.startswith(b"-ERR"), reply
    assert _pop_login(secure_node, tenant.pop_account, tenant.password,
                      "127.0.0.5").startswith(b"+OK")
