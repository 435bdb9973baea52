"""Forwarded copies and the loop guard (SPEC §5)."""

from __future__ import annotations

import email.policy
from email.parser import BytesHeaderParser

from mailplane.clock import FrozenClock
from mailplane.filters.forwarding import is_loop, plan_forward
from mailplane.filters.forwarding import targets as clean_destinations
from mailplane.mail.srs import Srs

RAW = (
    b"Received: from a.example by b.example; Mon, 23 Nov 2026 12:00:00 +0900\r\n"
    b"From: alice@sender.example\r\nTo: taro_1@e06.example.net\r\n"
    b"Subject: =?utf-8?b?44GT44KT44Gr44Gh44Gv?=\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=sender.example; b=abc\r\n\r\nbody\r\n"
)
ADDRESS = "taro_1@e06.example.net"
RECEIVED = "from mx.sender.example ([192.0.2.1])\r\n\tby mx.mailplane.test; Mon, 23 Nov 2026"


def headers(raw: bytes) -> email.message.Message:
    return BytesHeaderParser(policy=email.policy.default).parsebytes(raw)


def srs() -> Srs:
    return Srs(secret="k", domain="srs.mailplane.test", now=FrozenClock().now)


def test_forwarded_copy_is_the_message_as_received_under_our_trace() -> None:
    plan = plan_forward(
        raw=RAW, headers=headers(RAW), address=ADDRESS,
        destinations=("a@dest.example", "b@dest.example", "c@dest.example"),
        envelope_sender="alice@sender.example", received=RECEIVED, srs=srs(), max_hops=25,
    )
    assert plan is not None
    assert plan.recipients == ["a@dest.example", "b@dest.example", "c@dest.example"]
    assert plan.message.endswith(RAW)  # byte for byte: DKIM survives, no [spam] tag
    top = plan.message[: -len(RAW)]
    assert top.startswith(b"Delivered-To: taro_1@e06.example.net\r\nReceived: from mx.sender")
    assert plan.mail_from.startswith("SRS0=")
    assert srs().reverse(plan.mail_from) == "alice@sender.example"


def test_forward_of_a_bounce_keeps_the_null_sender() -> None:
    plan = plan_forward(
        raw=RAW, headers=headers(RAW), address=ADDRESS, destinations=("a@dest.example",),
        envelope_sender="", received=RECEIVED, srs=srs(), max_hops=25,
    )
    assert plan is not None and plan.mail_from == ""


def test_message_that_already_passed_this_address_is_not_forwarded() -> None:
    looped = b"Delivered-To: Taro_1@E06.example.net\r\n" + RAW
    assert is_loop(headers(looped), ADDRESS, 25)
    assert not is_loop(headers(RAW), ADDRESS, 25)
    assert plan_forward(
        raw=looped, headers=headers(looped), address=ADDRESS, destinations=("a@x.example",),
        envelope_sender="alice@sender.example", received=RECEIVED, srs=srs(), max_hops=25,
    ) is None


def test_forwarding_loop_between_two_hosted_addresses_terminates() -> None:
    """A → B → A: A's copy reaches B, B forwards back to A, A sees its own Delivered-To."""
    a, b = "aaa@e06.example.net", "bbb@e06.example.net"
    message, hops = RAW, 0
    current, target = a, b
    while True:
        plan = plan_forward(
            raw=message, headers=headers(message), address=current, destinations=(target,),
            envelope_sender="alice@sender.example", received=RECEIVED, srs=srs(), max_hops=25,
        )
        if plan is None:
            break
        hops += 1
        message, current, target = plan.message, target, current
        assert hops < 10
    assert hops == 2


def test_too_many_received_headers_stop_forwarding() -> None:
    many = b"Received: from x by y; Mon, 23 Nov 2026\r\n" * 25 + RAW  # 26 with RAW's own
    assert is_loop(headers(many), ADDRESS, 25)
    assert not is_loop(headers(many), ADDRESS, 26)


def test_destinations_are_deduplicated_capped_and_never_the_address_itself() -> None:
    assert clean_destinations(
        ADDRESS, ["x@a.example", "X@A.example", "", ADDRESS.upper(), "y@a.example",
                  "z@a.example", "w@a.example"]
    ) == ["x@a.example", "y@a.example", "z@a.example"]
    assert plan_forward(
        raw=RAW, headers=headers(RAW), address=ADDRESS, destinations=(),
        envelope_sender="alice@sender.example", received=RECEIVED, srs=srs(), max_hops=25,
    ) is None
