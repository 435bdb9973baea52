"""One ``DKIM-Signature`` header (RFC 6376 §3.5, §5): relaxed/relaxed, ``rsa-sha256`` or
``ed25519-sha256`` (RFC 8463).

The DKIM rules come from dkimpy — parsing the header (``rfc822_parse``), which header
instances a name in ``h=`` selects (``select_headers``, bottom-up, §5.4.2), the relaxed
header canonicalization (``dkim.canonicalization.Relaxed``, §3.4.2) and the end of the
relaxed body one (§3.4.4) — so what we hash is what dkimpy's verifier hashes.  Two steps
are ours, for speed, and a property test holds them equal to dkimpy's on any input: the
body's whitespace runs are compressed by one regex that touches only runs that change
(dkimpy's rewrote every single space: 20 ms for a 100 KB body), and the body is sliced off
instead of split into lines and joined again.  The private-key operation is OpenSSL's,
through ``cryptography``: dkimpy's own RSA is pure Python — 27 ms per signature on the
2-core bench machine against 1 ms (docs/performance.md, "DKIM signing"), holding the GIL
the whole time.  The body is canonicalized and hashed once for every signature of a
message.

The header is built so that every line break falls where the grammar allows folding
white space (after ``;``, around ``:`` in ``h=``, inside the ``b=`` value), and the bytes
hashed are the bytes sent with the ``b=`` value removed (§3.7), so any verifier's
relaxed canonicalization sees the same header we signed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim.canonicalization import Relaxed, correct_empty_body, strip_trailing_lines

from mailplane.signing.keys import SIGNATURE_ALGORITHM, Algorithm

Headers = list[tuple[bytes, bytes]]
HEADER_NAME = b"DKIM-Signature"
#: Lines of the header stay within this many characters (RFC 5322 §2.1.1: 78).
LINE = 76


_WSP_TO_CHANGE = re.compile(rb"[\t ]{2,}|\t")


def parse(message: bytes) -> tuple[Headers, bytes]:
    """(headers as (name, raw value) pairs, body) of a CRLF message — raises
    ``dkim.MessageFormatError`` for a header dkimpy cannot read."""
    if message.startswith(b"\r\n"):
        return [], message[2:]
    end = message.find(b"\r\n\r\n")
    head, body = (message, b"") if end < 0 else (message[:end + 4], message[end + 4:])
    headers, _ = dkim.rfc822_parse(head)
    return [(bytes(name), bytes(value)) for name, value in headers], body


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4, the same bytes as dkimpy's ``Relaxed.canonicalize_body``: each
    whitespace run one space, none at a line's end, no empty lines at the end."""
    body = _WSP_TO_CHANGE.sub(b" ", body).replace(b" \r\n", b"\r\n")
    return bytes(correct_empty_body(strip_trailing_lines(body)))


def body_hash(body: bytes) -> bytes:
    """``bh=`` (§3.7): base64 SHA-256 of the relaxed-canonical body."""
    return base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())


def _fold(items: Sequence[bytes], separator: bytes, *, first: int) -> bytes:
    """``items`` joined by ``separator``, broken onto a new line (CRLF + space) before an
    item that would pass :data:`LINE`; ``first`` is the column the text starts at."""
    out, column = b"", first
    for index, item in enumerate(items):
        piece = item if index == 0 else separator + item
        if index and column + len(piece) > LINE:
            piece = separator.rstrip() + b"\r\n " + item
            column = 1 + len(item)
        else:
            column += len(piece)
        out += piece
    return out


def signature_header(
    headers: Headers, *, body_hash: bytes, include: Sequence[bytes], selector: str,
    domain: str, algorithm: Algorithm, key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey,
    timestamp: int,
) -> bytes:
    """The complete ``DKIM-Signature: …`` line(s), CRLF-terminated, to put on top."""
    names = _fold(list(include), b":", first=len(b" h="))
    tags = [b"v=1", b"a=" + SIGNATURE_ALGORITHM[algorithm], b"c=relaxed/relaxed",
            b"d=" + domain.encode("ascii"), b"s=" + selector.encode("ascii"),
            b"t=" + str(timestamp).encode("ascii"), b"h=" + names, b"bh=" + body_hash]
    unsigned = HEADER_NAME + b": " + _fold(tags, b"; ", first=len(HEADER_NAME) + 2) + b";\r\n b="
    value = unsigned[len(HEADER_NAME) + 1:]
    signed = dkim.select_headers(Relaxed.canonicalize_headers(headers), list(include))
    data = b"".join(name + b":" + text for name, text in signed)
    [(_, own)] = Relaxed.canonicalize_headers([(HEADER_NAME, value)])
    data += b"dkim-signature:" + own.rstrip()
    if algorithm == "ed25519":
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        signature = key.sign(hashlib.sha256(data).digest())  # RFC 8463 §3
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    encoded = base64.b64encode(signature)
    chunks = [encoded[i:i + LINE - 1] for i in range(0, len(encoded), LINE - 1)]
    return unsigned + b"".join(b"\r\n " + chunk for chunk in chunks) + b"\r\n"
