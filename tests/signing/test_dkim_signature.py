"""The DKIM signature's own steps (mailplane/signing/dkim_signature.py) are dkimpy's
rules: the relaxed body canonicalization and the header/body split give the same bytes as
dkimpy's on any input, so what we hash is what a verifier hashes (RFC 6376 §3.4.4)."""

from __future__ import annotations

import dkim
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from mailplane.signing.dkim_signature import parse, relaxed_body

#: Bodies made of the pieces that matter to canonicalization.
PIECES = st.sampled_from([b"a", b"xyz", b" ", b"  ", b"\t", b" \t ", b"\r\n", b"\r",
                          b"\n", b"\r\n\r\n", "日本".encode(), b"\x00", b"."])
BODIES = st.lists(PIECES, max_size=40).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(BODIES)
def test_the_relaxed_body_is_dkimpys(body: bytes) -> None:
    assert relaxed_body(body) == Relaxed.canonicalize_body(body)


HEADER = st.sampled_from([b"From: a@b.test\r\n", b"To: c@d.test,\r\n e@f.test\r\n",
                          b"Subject:  x \t y\r\n", b"X-Empty:\r\n", b"Received: from x\r\n"])


@settings(max_examples=200, deadline=None)
@given(st.lists(HEADER, min_size=1, max_size=6).map(b"".join), BODIES)
def test_the_split_into_header_and_body_is_dkimpys(head: bytes, body: bytes) -> None:
    message = head + b"\r\n" + body.replace(b"\r\n", b"\n").replace(b"\r", b"").replace(
        b"\n", b"\r\n")
    headers, parsed_body = parse(message)
    theirs_headers, theirs_body = dkim.rfc822_parse(message)
    assert headers == [(bytes(n), bytes(v)) for n, v in theirs_headers]
    assert parsed_body == theirs_body
