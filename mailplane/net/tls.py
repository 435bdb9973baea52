"""TLS certificates and server contexts for the MX (STARTTLS), submission (STARTTLS and
implicit TLS) and POP3 (STLS and implicit TLS); TLS 1.2 or newer everywhere (SPEC §8b).

The operator's certificate (``tls.cert_file``/``tls.key_file``) is used when configured;
otherwise a self-signed certificate is generated once into ``{state_dir}/tls/`` so a local
``make run`` works without any setup (SPEC §12).  Generation happens under a file lock so
several worker processes starting together end up with one matching key and certificate.

A failed handshake — a client that offers only TLS 1.0/1.1 or no common cipher, a scanner,
a connection dropped half-way — is the client's problem and anyone can cause it at will:
:func:`handshake_failed` says so in one throttled line per listener and reason, never with
a traceback, and counts it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailplane import metrics
from mailplane.config.settings import Settings
from mailplane.net.throttled_log import ThrottledLog

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

SELF_SIGNED_CERT = "selfsigned.crt"
SELF_SIGNED_KEY = "selfsigned.key"
SELF_SIGNED_DAYS = 825


def ensure_certificate(settings: Settings) -> tuple[Path, Path]:
    """Paths of the certificate chain and key to serve; generates a self-signed pair once."""
    if settings.tls.cert_file and settings.tls.key_file:
        return Path(settings.tls.cert_file), Path(settings.tls.key_file)
    tls_dir = settings.state_dir / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = tls_dir / SELF_SIGNED_CERT, tls_dir / SELF_SIGNED_KEY
    with open(tls_dir / ".generate.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not (cert_path.exists() and key_path.exists()):
            _generate_self_signed(settings.mx.hostname, cert_path, key_path)
    return cert_path, key_path


def server_ssl_context(settings: Settings) -> ssl.SSLContext:
    """A server context with the configured (or generated) certificate; TLS 1.2 or newer."""
    cert_path, key_path = ensure_certificate(settings)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    return context


def handshake_failed(listener: str, peer_ip: str, error: BaseException | None) -> None:
    """Count a failed handshake and say so once per interval per listener and reason."""
    reason = handshake_failure_reason(error)
    metrics.TLS_HANDSHAKE_FAILURES.labels(listener).inc()
    _throttled.info((listener, "tls_handshake", reason),
                    "%s: TLS handshake with %s failed: %s", listener, peer_ip, reason)


def handshake_failure_reason(error: BaseException | None) -> str:
    """A short, bounded reason: OpenSSL's reason code (``UNSUPPORTED_PROTOCOL``,
    ``NO_SHARED_CIPHER``, ``WRONG_VERSION_NUMBER``, …) or the kind of failure."""
    if isinstance(error, ssl.SSLError):
        return str(error.reason or error.library or "ssl error")
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionError | EOFError):
        return "connection closed"
    return type(error).__name__ if error is not None else "unknown"


def _generate_self_signed(hostname: str, cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(UTC)
    alt_names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # the umask must not widen or narrow the intended mode
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
