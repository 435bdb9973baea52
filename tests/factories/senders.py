"""Remote sending domains for the sender-authentication tests: real keys (RSA-2048 and
Ed25519), the SPF, DKIM and DMARC records they publish in a :class:`DnsStub` zone, and
messages signed (and ARC-sealed) by dkimpy as a real sender's MTA would sign them.

Keys are made once per test session (RSA generation is the slow part)."""

from __future__ import annotations

import base64
import functools
import subprocess
from dataclasses import dataclass

import dkim
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.factories.dns import Zone

#: What a signer signs (RFC 6376 §5.4.1's recommendation, the From twice against additions).
SIGNED_HEADERS = [b"from", b"from", b"to", b"subject", b"date", b"message-id"]


@dataclass(frozen=True)
class KeyPair:
    algorithm: bytes  # dkimpy's signature_algorithm
    private: bytes  # what dkimpy's sign() takes
    public_record: str  # the DNS TXT record


@functools.cache
def rsa_key(bits: int = 2048) -> KeyPair:
    """An RSA key; under 1024 bits (which ``cryptography`` refuses to make, RFC 8301
    forbids to accept) from ``openssl genrsa``, for the test that it is refused."""
    if bits < 1024:
        pem = subprocess.run(["openssl", "genrsa", str(bits)], capture_output=True,
                             check=True).stdout
        loaded = serialization.load_pem_private_key(pem, None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        key = loaded
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(b"rsa-sha256", private,
                   f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}")


@functools.cache
def ed25519_key() -> KeyPair:
    key = nacl.signing.SigningKey.generate()
    private = base64.b64encode(bytes(key))
    public = base64.b64encode(bytes(key.verify_key)).decode()
    return KeyPair(b"ed25519-sha256", private, f"v=DKIM1; k=ed25519; p={public}")


@dataclass
class SendingDomain:
    """A domain on the Internet with its mail server at ``ip`` (the tests' 127.0.0.1)."""

    domain: str
    spf: str | None = "v=spf1 ip4:127.0.0.1 -all"
    dmarc: str | None = "v=DMARC1; p=reject"
    rsa_selector: str = "rsa2048"
    ed25519_selector: str = "ed"

    def publish(self, zone: Zone) -> None:
        """Its SPF, DKIM (both keys) and DMARC records into ``zone``."""
        if self.spf is not None:
            zone.setdefault(self.domain, {}).setdefault("TXT", []).append(self.spf)
        zone[f"{self.rsa_selector}._domainkey.{self.domain}"] = {
            "TXT": [rsa_key().public_record]}
        zone[f"{self.ed25519_selector}._domainkey.{self.domain}"] = {
            "TXT": [ed25519_key().public_record]}
        if self.dmarc is not None:
            zone[f"_dmarc.{self.domain}"] = {"TXT": [self.dmarc]}

    def sign(self, message: bytes, *, ed25519: bool = False,
             domain: str | None = None) -> bytes:
        """``message`` with a DKIM-Signature of ours on top (relaxed/relaxed)."""
        selector, key = ((self.ed25519_selector, ed25519_key()) if ed25519
                         else (self.rsa_selector, rsa_key()))
        header = dkim.sign(message, selector.encode(), (domain or self.domain).encode(),
                           key.private, canonicalize=(b"relaxed", b"relaxed"),
                           signature_algorithm=key.algorithm, include_headers=SIGNED_HEADERS)
        return bytes(header) + message

    def arc_seal(self, message: bytes, *, results: str) -> bytes:
        """``message`` ARC-sealed by this domain as a forwarder that found ``results``
        (its own Authentication-Results, authserv-id ``mx.<domain>``)."""
        authserv = f"mx.{self.domain}"
        with_results = (f"Authentication-Results: {authserv}; {results}\r\n".encode()
                        + message)
        headers = dkim.arc_sign(with_results, self.rsa_selector.encode(),
                                self.domain.encode(), rsa_key().private, authserv.encode(),
                                include_headers=SIGNED_HEADERS)
        return b"".join(headers) + with_results
