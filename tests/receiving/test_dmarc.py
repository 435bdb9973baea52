"""RFC 9989 as :mod:`mailplane.mailauth.dmarc` evaluates it, against a real DNS server on
loopback: the bounded tree walk, the organisational domain without a public suffix list,
policy discovery (p / sp / np, psd, t=y) and identifier alignment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailplane.mail.auth_results import DkimSignatureResult
from mailplane.mailauth.dmarc import DmarcEvaluator, parse_record, walk_targets
from mailplane.mailauth.dns import Deadline, DnsClient, make_resolver
from tests.factories.dns import DnsStub


@pytest.fixture
def dns() -> Iterator[DnsStub]:
    with DnsStub() as stub:
        yield stub


def evaluator(stub: DnsStub, budget: float = 5.0) -> DmarcEvaluator:
    return DmarcEvaluator(DnsClient(make_resolver((stub.host, stub.port))), Deadline(budget))


def publish(stub: DnsStub, domain: str, record: str) -> None:
    stub.zone.setdefault(f"_dmarc.{domain}", {}).setdefault("TXT", []).append(record)


def dkim_pass(domain: str) -> tuple[DkimSignatureResult, ...]:
    return (DkimSignatureResult(domain=domain, selector="s", result="pass"),)


def test_a_walk_never_makes_more_than_eight_queries() -> None:
    # RFC 9989 §4.10's own example.
    assert walk_targets("a.b.c.d.e.f.g.h.i.j.mail.example.com") == [
        "a.b.c.d.e.f.g.h.i.j.mail.example.com", "g.h.i.j.mail.example.com",
        "h.i.j.mail.example.com", "i.j.mail.example.com", "j.mail.example.com",
        "mail.example.com", "example.com", "com"]
    assert walk_targets("mail.example.com") == ["mail.example.com", "example.com", "com"]


@pytest.mark.parametrize(("records", "organisational"), [
    # §4.10.2's three examples, starting at a.mail.example.com.
    ({"mail.example.com": "v=DMARC1; p=none", "example.com": "v=DMARC1; p=reject"},
     "example.com"),
    ({"mail.example.com": "v=DMARC1; p=none; psd=n", "example.com": "v=DMARC1; p=reject"},
     "mail.example.com"),
    ({"com": "v=DMARC1; p=none; psd=y"}, "example.com"),
    ({}, "a.mail.example.com"),  # no record at all: the name itself
])
async def test_the_organisational_domain(dns: DnsStub, records: dict[str, str],
                                         organisational: str) -> None:
    for domain, record in records.items():
        publish(dns, domain, record)
    assert await evaluator(dns).organisational_domain("a.mail.example.com") == organisational


def test_record_parsing() -> None:
    assert parse_record("v=DMARC1; p=Reject; sp=none; adkim=s").policy == "reject"
    assert parse_record("v=DMARC1").policy == "none"  # p absent: none (§4.7)
    assert parse_record("p=reject; v=DMARC1") is None  # v must be first
    assert parse_record("v=dmarc1; p=reject") is None  # the value is case-sensitive
    assert parse_record("v=DMARC1; p=bogus") is None  # invalid p, no rua: no DMARC
    record = parse_record("v=DMARC1; p=bogus; rua=mailto:d@example.com")
    assert record is not None and record.policy == "none"  # invalid p with rua: p=none
    old = parse_record("v=DMARC1; p=reject; pct=0")
    assert old is not None and old.testing  # RFC 7489's pct=0 is t=y (Appendix A.6)
    record = parse_record("v=DMARC1; p=quarantine; t=y; unknown=1")
    assert record is not None and record.testing


async def test_pass_when_an_aligned_identifier_passes(dns: DnsStub) -> None:
    publish(dns, "example.com", "v=DMARC1; p=reject")
    outcome = await evaluator(dns).evaluate(
        ["example.com"], spf="pass", spf_domain="bounces.example.com", dkim=())
    assert (outcome.result, outcome.policy) == ("pass", "reject")
    outcome = await evaluator(dns).evaluate(
        ["example.com"], spf="fail", spf_domain="example.com", dkim=dkim_pass("example.com"))
    assert outcome.result == "pass"


async def test_fail_when_nothing_aligned_passes(dns: DnsStub) -> None:
    publish(dns, "example.com", "v=DMARC1; p=reject")
    outcome = await evaluator(dns).evaluate(
        ["example.com"], spf="pass", spf_domain="evil.example",
        dkim=dkim_pass("example.com.evil.example"))
    assert (outcome.result, outcome.policy, outcome.domain) == ("fail", "reject",
                                                                "example.com")


async def test_strict_alignment_needs_the_same_name(dns: DnsStub) -> None:
    publish(dns, "example.com", "v=DMARC1; p=reject; aspf=s; adkim=s")
    outcome = await evaluator(dns).evaluate(
        ["example.com"], spf="pass", spf_domain="bounces.example.com",
        dkim=dkim_pass("mail.example.com"))
    assert outcome.result == "fail"


async def test_a_subdomain_gets_sp_and_a_nonexistent_one_np(dns: DnsStub) -> None:
    publish(dns, "example.com", "v=DMARC1; p=none; sp=quarantine; np=reject")
    dns.zone["shop.example.com"] = {"A": ["192.0.2.1"]}
    existing = await evaluator(dns).evaluate(["shop.example.com"], spf="none",
                                             spf_domain="", dkim=())
    assert (existing.result, existing.policy) == ("fail", "quarantine")
    missing = await evaluator(dns).evaluate(["nowhere.example.com"], spf="none",
                                            spf_domain="", dkim=())
    assert (missing.result, missing.policy) == ("fail", "reject")


async def test_the_author_domain_record_wins_over_its_parent(dns: DnsStub) -> None:
    publish(dns, "example.com", "v=DMARC1; p=reject")
    publish(dns, "news.example.com", "v=DMARC1; p=none")
    outcome = await evaluator(dns).evaluate(["news.example.com"], spf="none", spf_domain="",
                                            dkim=())
    assert outcome.policy == "none"


async def test_a_public_suffix_policy_applies_below_it(dns: DnsStub) -> None:
    publish(dns, "bank", "v=DMARC1; p=reject; psd=y")
    outcome = await evaluator(dns).evaluate(["example.bank"], spf="pass",
                                            spf_domain="other.bank", dkim=())
    # other.bank is another organisation under the PSD: not aligned.
    assert (outcome.result, outcome.policy) == ("fail", "reject")


async def test_no_record_anywhere_is_none(dns: DnsStub) -> None:
    outcome = await evaluator(dns).evaluate(["example.com"], spf="fail",
                                            spf_domain="example.com", dkim=())
    assert outcome.result == "none"


async def test_two_records_at_one_name_count_as_none(dns: DnsStub) -> None:
    publish(dns, "example.com", "v=DMARC1; p=reject")
    publish(dns, "example.com", "v=DMARC1; p=none")
    outcome = await evaluator(dns).evaluate(["example.com"], spf="fail",
                                            spf_domain="example.com", dkim=())
    assert outcome.result == "none"


async def test_the_worst_of_several_author_domains_counts(dns: DnsStub) -> None:
    publish(dns, "bank.example", "v=DMARC1; p=reject")
    outcome = await evaluator(dns).evaluate(
        ["harmless.example", "bank.example"], spf="pass", spf_domain="harmless.example",
        dkim=())
    assert (outcome.result, outcome.domain) == ("fail", "bank.example")


async def test_dns_trouble_is_temperror_not_fail(dns: DnsStub) -> None:
    dns.silent = True
    outcome = await evaluator(dns, budget=0.3).evaluate(["example.com"], spf="none",
                                                        spf_domain="", dkim=())
    assert outcome.result == "temperror"


async def test_an_aligned_check_that_timed_out_is_temperror(dns: DnsStub) -> None:
    publish(dns, "example.com", "v=DMARC1; p=reject")
    outcome = await evaluator(dns).evaluate(
        ["example.com"], spf="temperror", spf_domain="example.com", dkim=())
    assert outcome.result == "temperror"
    # ... but a timeout of the attacker's own domain does not save a forgery.
    outcome = await evaluator(dns).evaluate(
        ["example.com"], spf="temperror", spf_domain="evil.example", dkim=())
    assert outcome.result == "fail"
