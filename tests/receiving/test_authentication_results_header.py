"""RFC 8601 as :mod:`mailplane.mailauth.header` writes and reads it: one header of ours,
values a sender chose can never fold or end it, and forged ones with our authserv-id —
however they are spelled — are removed while other ADMDs' are kept."""

from __future__ import annotations

import email
import email.policy

import authres
import pytest

from mailplane.mail.auth_results import AuthResults, DkimSignatureResult
from mailplane.mailauth.header import authserv_id_of, build, pvalue, stamp

ID = "mx.example.net"


def test_the_header_parses_with_an_independent_parser() -> None:
    auth = AuthResults(spf="pass", spf_domain="sender.example",
                       dkim=(DkimSignatureResult("sender.example", "s1", "pass",
                                                 "rsa-sha256", "AbC+/dEf=="),),
                       dmarc="pass", dmarc_policy="reject", from_domain="sender.example")
    value = build(ID, auth, mail_from="alice@sender.example", helo="client.example")
    parsed = authres.AuthenticationResultsHeader.parse(
        f"Authentication-Results: {value}".replace("\r\n", ""))
    assert parsed.authserv_id == ID
    methods = {r.method: r.result for r in parsed.results}
    assert methods == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}


@pytest.mark.parametrize("hostile", [
    'evil\r\nDKIM-Signature: forged', "a\x00b", 'q"uote\\', "x\u2028y", "ä@例え.jp"])
def test_values_from_the_message_cannot_break_the_header(hostile: str) -> None:
    auth = AuthResults(dkim=(DkimSignatureResult(hostile, hostile, "fail", hostile),),
                       from_domain=hostile, spf_domain=hostile)
    value = build(ID, auth, mail_from=f"{hostile}@x.example", helo=hostile)
    assert "\r\n" not in value.replace("\r\n\t", "")
    assert not any(c in value.replace("\r\n\t", "") for c in "\r\n\x00\u2028")
    message = email.message_from_bytes(stamp(b"Subject: x\r\n\r\nbody\r\n", value, ID),
                                       policy=email.policy.default)
    assert len(message.get_all("Authentication-Results")) == 1
    assert message.get_all("DKIM-Signature") is None


def test_pvalue_quotes_only_what_needs_it() -> None:
    assert pvalue("alice@sender.example") == "alice@sender.example"
    assert pvalue("sender.example") == "sender.example"
    assert pvalue("AbC+/dE=") == '"AbC+/dE="'
    assert pvalue('a "b"') == '"a \\"b\\""'


@pytest.mark.parametrize(("value", "ident"), [
    (b" mx.example.net; spf=pass", "mx.example.net"),
    (b" (comment (nested)) MX.Example.NET.; dkim=pass", "mx.example.net"),
    (b' "mx.example.net" 1; none', "mx.example.net"),
    (b"\r\n\tmx.example.net\r\n\t; dmarc=pass", "mx.example.net"),
    (b" mx.example.net.evil.example; spf=pass", "mx.example.net.evil.example"),
    (b" ; spf=pass", ""),
])
def test_the_authserv_id_is_read_like_rfc_8601(value: bytes, ident: str) -> None:
    assert authserv_id_of(value) == ident


def test_stamp_removes_ours_and_keeps_others() -> None:
    raw = (b"Authentication-Results: mx.example.net; dmarc=pass\r\n"
           b"From: a@b.example\r\n"
           b"Authentication-Results: mx.example.net.evil.example; spf=pass\r\n"
           b"AUTHENTICATION-RESULTS: (x) mx.example.net;\r\n dkim=pass\r\n"
           b"Subject: hi\r\n\r\nAuthentication-Results: mx.example.net; in the body\r\n")
    stamped = stamp(raw, f"{ID}; none", ID)
    assert stamped.startswith(b"Authentication-Results: mx.example.net; none\r\n")
    assert stamped.count(b"mx.example.net; dmarc=pass") == 0
    assert b"dkim=pass" not in stamped
    assert b"mx.example.net.evil.example; spf=pass" in stamped  # not ours
    assert stamped.endswith(b"\r\nAuthentication-Results: mx.example.net; in the body\r\n")


def test_a_message_without_forged_headers_is_only_prefixed() -> None:
    raw = b"From: a@b.example\r\n\r\nbody\r\n"
    ours = b"Authentication-Results: mx.example.net; none\r\n"
    assert stamp(raw, f"{ID}; none", ID) == ours + raw
