"""The TLS helper shared by POP3 and submission."""

from __future__ import annotations

import ssl
import stat
from collections.abc import Callable

from cryptography import x509

from mailplane.config.settings import Settings
from mailplane.net.tls import ensure_certificate, server_ssl_context


def test_self_signed_certificate_is_generated_once_with_a_private_key(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(mx={"hostname": "mx.isp.test"})
    cert_path, key_path = ensure_certificate(settings)
    assert cert_path.parent == settings.state_dir / "tls"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert certificate.subject.rfc4514_string() == "CN=mx.isp.test"
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    first = cert_path.read_bytes()
    assert ensure_certificate(settings) == (cert_path, key_path)
    assert cert_path.read_bytes() == first
    assert isinstance(server_ssl_context(settings), ssl.SSLContext)


def test_configured_certificate_is_used_as_is(make_settings: Callable[..., Settings]) -> None:
    generated = ensure_certificate(make_settings())
    settings = make_settings(tls={"cert_file": str(generated[0]), "key_file": str(generated[1])},
                             state_dir="/nonexistent-state")
    assert ensure_certificate(settings) == generated
