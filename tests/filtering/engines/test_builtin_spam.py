"""SPEC §4: the built-in scorer — GTUBE, named header/structure rules, DNSBL via dnspython."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import compat32

import pytest

from mailplane.config.sections import SpamConfig
from mailplane.filters.engines import builtin_spam
from mailplane.filters.engines.builtin_spam import BuiltinSpamEngine, make_resolver
from mailplane.mail.auth_results import AuthResults, DkimSignatureResult
from mailplane.mail.message import MessageContext
from tests.factories.dns import DnsStub, a_records
from tests.factories.messages import gtube_message, ordinary_message

ZONE = "bl.example.test"


def _message(**headers: str) -> bytes:
    message = EmailMessage()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Hello.\n")
    return bytes(message)


async def test_gtube_scores_one_thousand_and_is_spam() -> None:
    result = await BuiltinSpamEngine(SpamConfig()).check(gtube_message())
    assert result.is_spam
    assert result.score >= 1000
    assert "GTUBE" in result.rules


async def test_gtube_inside_base64_text_part_is_found() -> None:
    message = EmailMessage()
    message["Subject"] = "x"
    message.set_content(gtube_message().decode().split("\n\n", 1)[1], cte="base64")
    assert b"GTUBE-STANDARD" not in bytes(message)
    result = await BuiltinSpamEngine(SpamConfig()).check(bytes(message))
    assert "GTUBE" in result.rules


async def test_ordinary_message_scores_zero() -> None:
    result = await BuiltinSpamEngine(SpamConfig(threshold=5.0)).check(ordinary_message())
    assert result.score == 0
    assert result.rules == ()
    assert not result.is_spam
    assert result.threshold == 5.0


async def test_bare_message_missing_headers_names_the_rules_and_stays_below_threshold() -> None:
    result = await BuiltinSpamEngine(SpamConfig()).check(b"Subject: hi\r\n\r\nbody\r\n")
    assert set(result.rules) == {"MISSING_FROM", "MISSING_DATE", "MISSING_MESSAGE_ID"}
    assert result.score == 3.0
    assert not result.is_spam


async def test_shouting_html_only_spoofed_sender_is_spam() -> None:
    message = EmailMessage()
    message["From"] = '"service@bank.example" <x@cheap.example>'
    message["To"] = "bob@example.net"
    message["Subject"] = "URGENT ACCOUNT VERIFICATION!!!"
    message.set_content("<p>click</p>", subtype="html")
    result = await BuiltinSpamEngine(SpamConfig()).check(bytes(message))
    assert {
        "SUBJECT_ALL_CAPS",
        "SUBJECT_EXCLAMATIONS",
        "HTML_ONLY",
        "FROM_NAME_OTHER_DOMAIN",
        "MISSING_DATE",
        "MISSING_MESSAGE_ID",
    } == set(result.rules)
    assert result.is_spam


async def test_display_name_with_address_of_same_domain_is_not_spoofing() -> None:
    data = _message(From='"alice@example.org" <alice@example.org>', Subject="hi")
    result = await BuiltinSpamEngine(SpamConfig()).check(data)
    assert "FROM_NAME_OTHER_DOMAIN" not in result.rules


async def test_our_threshold_decides() -> None:
    data = b"Subject: hi\r\n\r\nbody\r\n"  # scores 3.0
    assert (await BuiltinSpamEngine(SpamConfig(threshold=3.0)).check(data)).is_spam
    assert not (await BuiltinSpamEngine(SpamConfig(threshold=3.5)).check(data)).is_spam


@pytest.fixture
def dnsbl() -> Iterator[DnsStub]:
    # 192.0.2.99 is listed; 127.255.255.254 is the "query refused" code, not a listing.
    records = {
        f"99.2.0.192.{ZONE}": "127.0.0.2",
        f"98.2.0.192.{ZONE}": "127.255.255.254",
    }
    with DnsStub(a_records(records)) as stub:
        yield stub


def _dnsbl_engine(stub: DnsStub, timeout: float = 2.0) -> BuiltinSpamEngine:
    settings = SpamConfig(dnsbl_zones=[ZONE], dns_timeout_seconds=timeout)
    return BuiltinSpamEngine(settings, resolver=make_resolver(stub.host, stub.port))


async def test_dnsbl_listed_client_ip_adds_the_zone_rule(dnsbl: DnsStub) -> None:
    result = await _dnsbl_engine(dnsbl).check(ordinary_message(), client_ip="192.0.2.99")
    assert result.rules == (f"DNSBL_{ZONE}",)
    assert result.score == 3.0
    assert dnsbl.queries == [(f"99.2.0.192.{ZONE}", "A")]


async def test_dnsbl_unlisted_client_ip_adds_nothing(dnsbl: DnsStub) -> None:
    result = await _dnsbl_engine(dnsbl).check(ordinary_message(), client_ip="192.0.2.1")
    assert result.rules == ()
    assert dnsbl.queries == [(f"1.2.0.192.{ZONE}", "A")]


async def test_dnsbl_error_code_answer_is_not_a_listing(dnsbl: DnsStub) -> None:
    result = await _dnsbl_engine(dnsbl).check(ordinary_message(), client_ip="192.0.2.98")
    assert result.rules == ()


async def test_dnsbl_skips_ipv6_and_missing_client_ip(dnsbl: DnsStub) -> None:
    engine = _dnsbl_engine(dnsbl)
    await engine.check(ordinary_message(), client_ip="2001:db8::1")
    await engine.check(ordinary_message())
    assert dnsbl.queries == []


async def test_dnsbl_timeout_skips_the_rule_and_never_fails_the_message() -> None:
    with DnsStub(silent=True) as stub:
        result = await _dnsbl_engine(stub, timeout=0.3).check(
            ordinary_message(), client_ip="192.0.2.99"
        )
    assert result.rules == ()
    assert not result.is_spam


def _shapes() -> list[bytes]:
    """Single-part, multipart, encoded, HTML-only, message/rfc822, GTUBE in each."""
    gtube_body = gtube_message().decode().split("\n\n", 1)[1]
    shapes = [ordinary_message(), gtube_message(), b"Subject: hi\r\n\r\nbody\r\n", b"",
              b"no headers at all", b"\r\nbody only\r\n"]
    for cte in ("7bit", "8bit", "base64", "quoted-printable"):
        for subtype in ("plain", "html"):
            message = EmailMessage()
            message["From"] = '"a@other.example" <x@cheap.example>'
            message["Subject"] = "BUY NOW CHEAP PILLS!!!"
            message.set_content(gtube_body, subtype=subtype, cte=cte)
            shapes.append(bytes(message))
            message.add_alternative("<p>hi</p>", subtype="html")
            shapes.append(bytes(message))
    wrapper = EmailMessage()
    wrapper["Subject"] = "fwd"
    inner = EmailMessage()
    inner.set_content(gtube_body, cte="base64")
    wrapper.set_content(inner)
    shapes.append(bytes(wrapper))
    return shapes


def test_parsing_only_the_headers_of_plain_mail_fires_the_same_rules_as_a_full_parse() -> None:
    """``parse_for_rules`` skips the body parse only where it cannot change a verdict."""
    for data in _shapes():
        full = email.message_from_bytes(data, policy=compat32)
        mx_view = MessageContext(mail_from="", rcpt_tos=(), raw=data,
                                 received_at=datetime.now(UTC)).headers
        for fast in (builtin_spam.parse_for_rules(data),
                     builtin_spam.parse_for_rules(data, mx_view)):
            assert ({r.name for r in builtin_spam.RULES if r.fires(fast)}
                    == {r.name for r in builtin_spam.RULES if r.fires(full)}), data[:200]
            assert ((builtin_spam.GTUBE in data or builtin_spam._gtube_in_decoded_text(fast))
                    == (builtin_spam.GTUBE in data
                        or builtin_spam._gtube_in_decoded_text(full)))


# --- sender authentication (SPEC §8b: the results feed the verdict) -----------------------


def _sig(result: str, domain: str = "sender.example") -> DkimSignatureResult:
    return DkimSignatureResult(domain, "s", result)  # type: ignore[arg-type]


@pytest.mark.parametrize(("auth", "rules"), [
    (AuthResults(spf="pass", dkim=(_sig("pass"),), dmarc="pass"), ()),
    (AuthResults(spf="fail"), ("SPF_FAIL",)),
    (AuthResults(spf="softfail"), ()),
    (AuthResults(dkim=(_sig("fail"),)), ("DKIM_FAIL",)),
    (AuthResults(dkim=(_sig("fail"), _sig("pass", "list.example"))), ()),
    (AuthResults(dmarc="fail", dmarc_policy="reject"), ("DMARC_POLICY_REJECT",)),
    (AuthResults(dmarc="fail", dmarc_policy="reject", dmarc_testing=True),
     ("DMARC_POLICY_QUARANTINE",)),
    (AuthResults(dmarc="fail", dmarc_policy="none"), ("DMARC_POLICY_NONE",)),
    (AuthResults(arc="fail"), ("ARC_FAIL",)),
    (AuthResults(spf="fail", dmarc="fail", evaluated=False), ()),  # not checked: nothing
])
async def test_authentication_results_add_their_scores(auth: AuthResults,
                                                       rules: tuple[str, ...]) -> None:
    result = await BuiltinSpamEngine(SpamConfig()).check(ordinary_message(), auth=auth)
    assert result.rules == rules
    assert result.score == sum(dict(builtin_spam.auth_hits(auth)).values())


async def test_failing_authentication_can_tip_a_message_over_the_threshold() -> None:
    auth = AuthResults(spf="fail", dkim=(_sig("fail"),), dmarc="fail", dmarc_policy="reject")
    result = await BuiltinSpamEngine(SpamConfig(threshold=4.0)).check(ordinary_message(),
                                                                      auth=auth)
    assert result.is_spam and result.score == 4.0
