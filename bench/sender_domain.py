"""The bench's sending domain on the Internet: its records on a DNS server on loopback and
the DKIM signature of its mail, so ``mailplane-auth`` (authentication on) does every check a
real MX does for a well-run sender — SPF pass, a DKIM pass (RSA-2048, relaxed/relaxed),
DMARC ``p=reject`` pass — against the same messages every other server gets.

The DNS server answers in a thread of the bench process (dnspython messages over UDP); the
MX under test resolves through it (``[authentication] nameserver``) and caches the answers
for their TTL, as it would a local resolver's.
"""

from __future__ import annotations

import base64
import socket
import threading
from dataclasses import dataclass, field

import dkim
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DOMAIN = "sender.example"
SELECTOR = "bench"
#: What the bench's signer signs (RFC 6376 §5.4.1's recommendation).
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


def _quoted(text: str) -> str:
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)]
    return " ".join(f'"{chunk}"' for chunk in chunks)


@dataclass
class SendingDomain:
    """``sender.example``: an RSA-2048 DKIM key, SPF for 127.0.0.1, DMARC p=reject."""

    private_key: bytes = b""
    zone: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def create(cls) -> SendingDomain:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        public = base64.b64encode(key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
        return cls(private, {
            DOMAIN: ["v=spf1 ip4:127.0.0.1 -all"],
            f"{SELECTOR}._domainkey.{DOMAIN}": [f"v=DKIM1; k=rsa; p={public}"],
            f"_dmarc.{DOMAIN}": ["v=DMARC1; p=reject"],
        })

    def sign(self, message: bytes) -> bytes:
        header = dkim.sign(message, SELECTOR.encode(), DOMAIN.encode(), self.private_key,
                           canonicalize=(b"relaxed", b"relaxed"),
                           include_headers=SIGNED_HEADERS)
        return bytes(header) + message


class ZoneServer:
    """TXT records of ``zone`` over UDP on a loopback port; NXDOMAIN for other names,
    an empty answer for other types."""

    def __init__(self, zone: dict[str, list[str]]) -> None:
        self.zone = {name.lower(): records for name, records in zone.items()}
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="bench-dns", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        records = self.zone.get(name)
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            response.answer.append(dns.rrset.from_text_list(
                name + ".", 300, dns.rdataclass.IN, "TXT", [_quoted(r) for r in records]))
        return response

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            self._sock.sendto(self._answer(dns.message.from_wire(wire)).to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
