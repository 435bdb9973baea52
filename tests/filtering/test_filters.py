"""Filter unit tests: pure functions, no sockets (SPEC §4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailplane.filters.base import ScanResults, Verdict, merge
from mailplane.filters.deny_list import DenyListFilter, header_condition
from mailplane.filters.engines.base import SpamScanResult, VirusScanResult
from mailplane.filters.list_entries import sender_matches
from mailplane.filters.pipeline import AFTER_DECISION, PIPELINE, decide
from mailplane.mail.message import MessageContext, has_bare_line_ending
from mailplane.mail.rewrite import delivered_copy
from mailplane.policy.model import AddressPolicy, DenyConditions

SPAM = ScanResults(spam=SpamScanResult(is_spam=True, score=9.0, threshold=5.0))
VIRUS = ScanResults(virus=VirusScanResult(infected=True, signature="Eicar"))


def ctx(raw: bytes, mail_from: str = "alice@sender.example") -> MessageContext:
    return MessageContext(mail_from=mail_from, rcpt_tos=("t@e06.example.net",), raw=raw,
                          received_at=datetime(2026, 11, 23, tzinfo=UTC))


def policy(**fields: object) -> AddressPolicy:
    return AddressPolicy(address="t@e06.example.net", address_id=1, contract_id=1,
                         pop_account="m1", status="active", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entry", "sender", "expected"),
    [
        ("user@host.example", "USER@host.example", True),
        ("user@host.example", "xuser@host.example", False),
        ("123.jp", "x@abc123.jp", True),
        ("@123.jp", "x@abc123.jp", False),
        ("@123.jp", "x@123.jp", True),
        ("domain.tld", "a@sub.domain.tld", True),
        ("tarou", "tarou@x.example", False),
        ("", "a@b.example", False),
    ],
)
def test_sender_matching_rules(entry: str, sender: str, expected: bool) -> None:
    assert sender_matches((entry,), [sender]) is expected


@pytest.mark.parametrize(
    ("raw", "condition"),
    [
        (b"Subject: x\r\n\r\nb\r\n", "no_from"),
        (b"From: <>\r\nSubject: x\r\n\r\nb\r\n", "angle_from"),
        (b"From:  \r\nSubject: x\r\n\r\nb\r\n", "blank_from"),
        (b"From: a@b.example\r\n\r\nb\r\n", "no_subject"),
        (b"From: a@b.example\r\nSubject: \r\n\r\nb\r\n", "blank_subject"),
        (b"From: a@b.example\r\nSubject: =?UTF-8?B?IA==?=\r\n\r\nb\r\n", "blank_subject"),
        (b"From: a@b.example\r\nSubject: hi\r\n\r\nb\r\n", None),
    ],
)
def test_five_header_conditions(raw: bytes, condition: str | None) -> None:
    every = DenyConditions(True, True, True, True, True)
    assert header_condition(ctx(raw), every) == condition
    assert header_condition(ctx(raw), DenyConditions()) is None


def test_null_envelope_sender_alone_triggers_no_condition() -> None:
    every = DenyConditions(True, True, True, True, True)
    raw = b"From: MAILER-DAEMON@x.example\r\nSubject: failure\r\n\r\nb\r\n"
    assert header_condition(ctx(raw, mail_from=""), every) is None


def test_deny_subject_is_nfkc_and_ascii_case_insensitive() -> None:
    deny = DenyListFilter()
    p = policy(deny_subjects=("ｾｰﾙ", "FREE"))
    hit = ctx("From: a@b.example\r\nSubject: 大セール free gift\r\n\r\nb\r\n".encode())
    assert deny(hit, p, ScanResults()).quarantine == "deny"
    miss = ctx(b"From: a@b.example\r\nSubject: minutes\r\n\r\nb\r\n")
    assert deny(miss, p, ScanResults()).quarantine is None


def test_merge_allow_cancels_quarantine_but_keeps_tag() -> None:
    decision = merge([
        Verdict("spam", hit=True, tag_spam=True, quarantine="spam"),
        Verdict("deny_list", hit=True, quarantine="deny"),
        Verdict("allow_list", hit=True, cancel_quarantine=True),
    ])
    assert (decision.disposition, decision.tag_subject) == ("inbox", True)
    assert decision.hits == ("spam", "deny_list", "allow_list")


def test_merge_first_quarantine_reason_wins_and_stop_ends_the_fold() -> None:
    decision = merge([Verdict("spam", quarantine="spam"), Verdict("deny_list", quarantine="deny")])
    assert decision.quarantine_reason == "spam"
    stopped = merge([Verdict("virus", hit=True, replace_with_virus_report=True, stop=True),
                     Verdict("deny_list", hit=True, quarantine="deny")])
    assert stopped.virus_report and stopped.disposition == "inbox"
    assert stopped.hits == ("virus",)


def test_pipeline_order_is_virus_spoofing_spam_deny_allow_forwarding_auto_reply() -> None:
    assert [f.name for f in PIPELINE] + [s.name for s in AFTER_DECISION] == [
        "virus", "spoofing", "spam", "deny_list", "allow_list", "forwarding", "auto_reply"]


def test_virus_stops_the_pipeline_before_spam_tagging() -> None:
    scans = ScanResults(virus=VIRUS.virus, spam=SPAM.spam)
    decision = decide(ctx(b"From: a@b.example\r\n\r\nx\r\n"), policy(spam_judge=True), scans)
    assert decision.virus_report and not decision.tag_subject


def test_judge_off_means_no_tag_and_no_quarantine() -> None:
    decision = decide(ctx(b"From: a@b.example\r\n\r\nx\r\n"),
                      policy(spam_judge=False, spam_quarantine=True), SPAM)
    assert (decision.disposition, decision.tag_subject) == ("inbox", False)


def test_allowed_sender_is_not_quarantined_for_spam() -> None:
    p = policy(spam_judge=True, spam_quarantine=True, allow_addresses=("sender.example",))
    decision = decide(ctx(b"From: alice@sender.example\r\n\r\nx\r\n"), p, SPAM)
    assert (decision.disposition, decision.tag_subject) == ("inbox", True)


@pytest.mark.parametrize(
    ("subject_line", "expected"),
    [
        (b"Subject: Hello\r\n", b"Subject: [spam] Hello\r\n"),
        (b"Subject: [spam] Hello\r\n", b"Subject: [spam] Hello\r\n"),
        (b"Subject: =?UTF-8?B?W3NwYW1dIOaXpeacrA==?=\r\n",
         b"Subject: =?UTF-8?B?W3NwYW1dIOaXpeacrA==?=\r\n"),
        (b"Subject:\r\n =?UTF-8?B?5pel5pys?=\r\n", b"Subject: [spam] =?UTF-8?B?5pel5pys?=\r\n"),
        (b"Subject: long\r\n folded\r\n", b"Subject: [spam] long\r\n folded\r\n"),
    ],
)
def test_spam_tag_is_added_exactly_once(subject_line: bytes, expected: bytes) -> None:
    raw = b"From: a@b.example\r\n" + subject_line + b"\r\nbody\r\n"
    out = delivered_copy(raw, trace=[], tag_subject=True)
    assert out == b"From: a@b.example\r\n" + expected + b"\r\nbody\r\n"


def test_missing_subject_gets_a_tag_subject() -> None:
    out = delivered_copy(b"From: a@b.example\r\n\r\nbody\r\n", trace=[], tag_subject=True)
    assert b"Subject: [spam]\r\n" in out


@pytest.mark.parametrize("data", [b"a\nb\r\n", b"a\rb\r\n", b"x\r\n.\n", b"\r.\r"])
def test_bare_line_endings_are_detected(data: bytes) -> None:
    assert has_bare_line_ending(data)


def test_crlf_only_data_is_clean() -> None:
    assert not has_bare_line_ending(b"a\r\nb\r\n\r\n")
