"""DKIM key pairs (RFC 6376 §3.6, RFC 8463): Ed25519 and RSA side by side.

The private key of selector ``s`` is ``<keys_dir>/s.pem`` (PKCS#8 PEM, what OpenSSL,
OpenDKIM and rspamd read too), written once with mode 600 in a 700 directory and never
overwritten.  The public key — the ``p=`` of the DNS record — is kept in the database, so
``dns-records`` works on a node without the private keys and a node whose key file does
not match refuses to sign with it instead of signing what no DNS record verifies.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailplane.storage.state_dir import PRIVATE_FILE_MODE, private_dir

Algorithm = Literal["ed25519", "rsa"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
#: The ``a=`` tag of each algorithm's signature (RFC 6376 §3.3, RFC 8463 §3).
SIGNATURE_ALGORITHM: dict[Algorithm, bytes] = {"ed25519": b"ed25519-sha256",
                                                "rsa": b"rsa-sha256"}
#: TXT strings are at most 255 octets (RFC 1035 §3.3.14); longer values are split.
TXT_CHUNK = 255


class KeyFileError(Exception):
    """A private key file that is missing, unreadable or not the selector's key."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    algorithm: Algorithm
    private_pem: bytes
    #: The ``p=`` value: base64 of the raw 32-byte key (Ed25519, RFC 8463 §4.2) or of the
    #: DER SubjectPublicKeyInfo (RSA, as opendkim-genkey and rspamd publish it).
    public_key: str


def check_algorithm(value: str) -> Algorithm:
    if value not in ALGORITHMS:
        raise ValueError(f"unknown DKIM algorithm {value!r} (ed25519 or rsa)")
    return value


def generate(algorithm: Algorithm, *, rsa_bits: int = 2048) -> KeyPair:
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return KeyPair(algorithm, pem, public_key_of(private))


def public_key_of(private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
    else:
        raw = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(raw).decode("ascii")


def txt_value(algorithm: Algorithm, public_key: str) -> str:
    """The record at ``<selector>._domainkey.<domain>`` (RFC 6376 §3.6.1)."""
    return f"v=DKIM1; k={algorithm}; p={public_key}"


def txt_strings(value: str) -> list[str]:
    """``value`` split into TXT character-strings, which a verifier joins again."""
    return [value[i:i + TXT_CHUNK] for i in range(0, len(value), TXT_CHUNK)] or [""]


def key_path(keys_dir: Path, selector: str) -> Path:
    return keys_dir / f"{selector}.pem"


def write_private_key(keys_dir: Path, selector: str, pem: bytes) -> Path:
    """Write the key under a temporary name (mode 600 from the first byte), make it
    durable, then link it into place: never over an existing key, never half written."""
    private_dir(keys_dir)
    path = key_path(keys_dir, selector)
    temporary = keys_dir / f".{selector}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise KeyFileError(f"{path} exists already: not overwritten") from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A selector's private key as the signer uses it."""

    selector: str
    algorithm: Algorithm
    private: PrivateKey
    #: The PEM file's bytes (dkimpy's ARC sealing reads RSA keys in this form).
    pem: bytes


def load_signing_key(path: Path, selector: str, algorithm: Algorithm,
                     public_key: str) -> SigningKey:
    """The private key of ``path``, after checking it is an ``algorithm`` key whose
    public half is ``public_key`` (what DNS publishes for ``selector``)."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not ((algorithm == "ed25519" and isinstance(private, ed25519.Ed25519PrivateKey))
            or (algorithm == "rsa" and isinstance(private, rsa.RSAPrivateKey))):
        raise KeyFileError(f"{path} is not an {algorithm} key")
    if public_key_of(private) != public_key:
        raise KeyFileError(f"{path} does not match the public key of its selector in the "
                           "database (a different key on this node?)")
    return SigningKey(selector, algorithm, private, pem)
