"""RFC 7208 as :mod:`mailplane.mailauth.spf` evaluates it, against a real DNS server on
loopback: results, mechanisms, macros (§7.4's own examples), and the limits that keep a
hostile record from making us query the DNS without end (§4.6.4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from mailplane.mailauth.dns import Deadline, DnsClient, make_resolver
from mailplane.mailauth.spf import (
    SpfPermError,
    _Evaluation,
    check_host,
    parse_macro_string,
    parse_record,
)
from tests.factories.dns import DnsStub


@pytest.fixture
def dns() -> Iterator[DnsStub]:
    with DnsStub() as stub:
        yield stub


def client(stub: DnsStub) -> DnsClient:
    return DnsClient(make_resolver((stub.host, stub.port)))


async def spf(stub: DnsStub, record: str | None, *, ip: str = "192.0.2.3",
              sender: str = "alice@example.com", helo: str = "mail.example.com",
              budget: float = 5.0) -> str:
    if record is not None:
        stub.zone.setdefault("example.com", {})["TXT"] = [record]
    outcome = await check_host(client(stub), Deadline(budget), peer_ip=ip, mail_from=sender,
                               helo=helo)
    return outcome.result


@pytest.mark.parametrize(("record", "result"), [
    ("v=spf1 ip4:192.0.2.0/24 -all", "pass"),
    ("v=spf1 ip4:198.51.100.1 -all", "fail"),
    ("v=spf1 ip4:198.51.100.1 ~all", "softfail"),
    ("v=spf1 ip4:198.51.100.1 ?all", "neutral"),
    ("v=spf1 ip4:198.51.100.1", "neutral"),  # nothing matched, no all (§4.7)
    ("V=SPF1 +IP4:192.0.2.3 -ALL", "pass"),  # case-insensitive
    ("v=spf1 -ip4:192.0.2.3 +all", "fail"),  # the first match decides
    ("v=spf1 ip6:2001:db8::/32 -all", "fail"),  # an IPv4 client never matches ip6
    ("v=spf1 ip4:192.0.2.3 foo=bar -all", "pass"),  # unknown modifiers are ignored
])
async def test_results(dns: DnsStub, record: str, result: str) -> None:
    assert await spf(dns, record) == result


@pytest.mark.parametrize("record", [
    "v=spf1 ip4:192.0.2.300 -all",  # not an address
    "v=spf1 ip4:192.0.2.3/33 -all",
    "v=spf1 ip4:192.0.2.3/ -all",
    "v=spf1 include -all",  # include needs a domain
    "v=spf1 include:example -all",  # no top-level label
    "v=spf1 a:%{z}.example.com -all",  # unknown macro letter
    "v=spf1 a:%{d0}.example.com -all",  # a zero transformer
    "v=spf1 exists:%{c}.example.com -all",  # c is for exp= only
    "v=spf1 frobnicate -all",  # unknown mechanism
    "v=spf1 redirect=a.example.com redirect=b.example.com",
    "v=spf1 -all ip4:192.0.2.3%",  # a syntax error after the match still counts (§4.6)
])
async def test_a_syntax_error_anywhere_is_permerror(dns: DnsStub, record: str) -> None:
    assert await spf(dns, record) == "permerror"


async def test_no_record_or_no_domain_is_none(dns: DnsStub) -> None:
    assert await spf(dns, None) == "none"  # NXDOMAIN
    dns.zone["example.com"] = {"TXT": ["google-site-verification=abc"]}
    assert await spf(dns, None) == "none"  # TXT but no SPF
    assert await spf(dns, None, sender="alice@localhost") == "none"  # one label


async def test_two_records_are_permerror(dns: DnsStub) -> None:
    dns.zone["example.com"] = {"TXT": ["v=spf1 -all", "v=spf1 +all"]}
    assert await spf(dns, None) == "permerror"


async def test_a_record_split_in_strings_is_joined(dns: DnsStub) -> None:
    record = "v=spf1 " + " ".join(f"ip4:198.51.100.{n}" for n in range(1, 40)) + \
        " ip4:192.0.2.3 -all"
    assert len(record) > 255  # published as several character-strings
    assert await spf(dns, record) == "pass"


async def test_a_and_mx_with_cidr(dns: DnsStub) -> None:
    dns.zone["mail.example.com"] = {"A": ["192.0.2.10"]}
    dns.zone["example.com"] = {"MX": [(10, "mail.example.com")], "A": ["198.51.100.9"]}
    assert await spf(dns, "v=spf1 a:mail.example.com -all") == "fail"
    assert await spf(dns, "v=spf1 a:mail.example.com/28 -all") == "pass"
    assert await spf(dns, "v=spf1 mx -all") == "fail"
    assert await spf(dns, "v=spf1 mx/24 -all") == "pass"
    assert await spf(dns, "v=spf1 a -all", ip="198.51.100.9") == "pass"


async def test_include_and_redirect(dns: DnsStub) -> None:
    dns.zone["_spf.provider.example"] = {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]}
    dns.zone["other.example"] = {"TXT": ["v=spf1 ~all"]}
    assert await spf(dns, "v=spf1 include:_spf.provider.example -all") == "pass"
    # An included fail is "no match", not fail (§5.2): the next term decides.
    assert await spf(dns, "v=spf1 include:_spf.provider.example ?all",
                     ip="198.51.100.1") == "neutral"
    assert await spf(dns, "v=spf1 redirect=_spf.provider.example") == "pass"
    assert await spf(dns, "v=spf1 redirect=other.example", ip="198.51.100.1") == "softfail"
    # An include or redirect of a domain with no record is permerror (§5.2, §6.1).
    assert await spf(dns, "v=spf1 include:nothing.example -all") == "permerror"
    assert await spf(dns, "v=spf1 redirect=nothing.example") == "permerror"


async def test_exists_with_macros(dns: DnsStub) -> None:
    dns.zone["3.2.0.192.alice.allow.example.com"] = {"A": ["127.0.0.2"]}
    assert await spf(dns, "v=spf1 exists:%{ir}.%{l}.allow.%{d} -all") == "pass"
    assert await spf(dns, "v=spf1 exists:%{ir}.%{l}.allow.%{d} -all",
                     sender="bob@example.com") == "fail"


async def test_ptr_matches_a_validated_name_only(dns: DnsStub) -> None:
    dns.zone["3.2.0.192.in-addr.arpa"] = {"PTR": ["mail.example.com."]}
    dns.zone["mail.example.com"] = {"A": ["192.0.2.3"]}
    assert await spf(dns, "v=spf1 ptr -all") == "pass"
    dns.zone["mail.example.com"] = {"A": ["192.0.2.99"]}  # the name does not lead back
    assert await spf(dns, "v=spf1 ptr -all") == "fail"


async def test_more_than_ten_dns_lookups_is_permerror(dns: DnsStub) -> None:
    for n in range(11):
        dns.zone[f"i{n}.example.com"] = {"TXT": ["v=spf1 ?all"]}
    ten = " ".join(f"include:i{n}.example.com" for n in range(10))
    assert await spf(dns, f"v=spf1 {ten} ip4:192.0.2.3 -all") == "pass"
    assert await spf(dns, f"v=spf1 {ten} include:i10.example.com -all") == "permerror"


async def test_an_include_loop_ends_in_permerror(dns: DnsStub) -> None:
    dns.zone["loop.example"] = {"TXT": ["v=spf1 include:example.com -all"]}
    assert await spf(dns, "v=spf1 include:loop.example -all") == "permerror"
    assert len(dns.queries) <= 12


async def test_more_than_two_void_lookups_is_permerror(dns: DnsStub) -> None:
    assert await spf(dns, "v=spf1 a:v1.example.com a:v2.example.com ip4:192.0.2.3 -all") \
        == "pass"
    assert await spf(dns, "v=spf1 a:v1.example.com a:v2.example.com a:v3.example.com "
                          "ip4:192.0.2.3 -all") == "permerror"


async def test_mx_with_more_than_ten_names_is_permerror(dns: DnsStub) -> None:
    dns.zone["example.com"] = {"MX": [(n, f"mx{n}.example.com") for n in range(11)]}
    assert await spf(dns, "v=spf1 mx -all") == "permerror"


async def test_a_silent_server_is_temperror(dns: DnsStub) -> None:
    dns.silent = True
    assert await spf(dns, None, budget=0.3) == "temperror"


async def test_the_null_sender_checks_the_helo_name(dns: DnsStub) -> None:
    dns.zone["mail.example.com"] = {"TXT": ["v=spf1 ip4:192.0.2.3 -all"]}
    outcome = await check_host(client(dns), Deadline(5), peer_ip="192.0.2.3", mail_from="",
                               helo="mail.example.com")
    assert (outcome.result, outcome.domain) == ("pass", "mail.example.com")


async def test_an_ipv4_mapped_client_is_ipv4(dns: DnsStub) -> None:
    assert await spf(dns, "v=spf1 ip4:192.0.2.3 -all", ip="::ffff:192.0.2.3") == "pass"


# --- macros: RFC 7208 §7.4's examples ------------------------------------------------------

MACRO_EXAMPLES = [
    ("%{s}", "strong-bad@email.example.com"),
    ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"),
    ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"),
    ("%{d2}", "example.com"),
    ("%{d1}", "com"),
    ("%{dr}", "com.example.email"),
    ("%{d2r}", "example.email"),
    ("%{l}", "strong-bad"),
    ("%{l-}", "strong.bad"),
    ("%{lr}", "strong-bad"),
    ("%{lr-}", "bad.strong"),
    ("%{l1r-}", "strong"),
    ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
    ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
    ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
    ("%%%_%-", "% %20"),
    ("%{L}", "strong-bad"),  # upper case: URL-escaped
]


@pytest.mark.parametrize(("macro", "expanded"), MACRO_EXAMPLES)
async def test_macro_expansion(macro: str, expanded: str) -> None:
    evaluation = _Evaluation(DnsClient(None), Deadline(1), ipaddress.ip_address("192.0.2.3"),
                             "strong-bad@email.example.com", "mx.example.org")
    assert await evaluation.expand(parse_macro_string(macro), "email.example.com") == expanded


async def test_ipv6_macro_expansion() -> None:
    evaluation = _Evaluation(DnsClient(None), Deadline(1), ipaddress.ip_address("2001:db8::cb01"),
                             "strong-bad@email.example.com", "mx.example.org")
    assert await evaluation.expand(parse_macro_string("%{ir}.%{v}._spf.%{d2}"),
                                   "email.example.com") == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com")


async def test_a_long_expansion_is_cut_from_the_left() -> None:
    evaluation = _Evaluation(DnsClient(None), Deadline(1), ipaddress.ip_address("192.0.2.3"),
                             ("a" * 60 + ".") * 5 + "x@example.com", "mx.example.org")
    expanded = await evaluation.expand(parse_macro_string("%{l}.%{d}"), "example.com")
    assert len(expanded) <= 253 and expanded.endswith(".example.com")


def test_unknown_modifiers_need_only_valid_syntax() -> None:
    assert parse_record("v=spf1 x-custom=%{d} -all").directives[0].mechanism == "all"
    with pytest.raises(SpfPermError):
        parse_record("v=spf1 x-custom=%{ -all")
