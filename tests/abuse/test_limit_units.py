"""The pieces of the limits under abuse on their own (issue 15): settings validation that
names the key, the throttled log, the connection limiter's per-IP arithmetic, the
descriptor budget, and the MIME walker's order and bounds."""

from __future__ import annotations

import email.policy
import logging
import re
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from mailplane.config.settings import ConfigError, load_settings
from mailplane.mail.mime import (
    MimeLimits,
    MimeTooComplex,
    check_structure,
    leaf_parts,
    parse,
    top_level_cannot_nest,
    within_cheap_bound,
    within_counted_bound,
)
from mailplane.net.limits import ConnectionLimiter, ConnectionLimits, Refusal, client_key
from mailplane.net.throttled_log import ThrottledLog
from mailplane.node.listeners import FD_RESERVE, fit_connection_limits


@pytest.mark.parametrize(("env", "value", "key"), [
    ("MAILPLANE_MX__HARD_ERROR_LIMIT", "5", "mx"),  # not above soft_error_limit (10)
    ("MAILPLANE_MX__MAX_MIME_DEPTH", "1000", "mx.max_mime_depth"),
    ("MAILPLANE_SUBMISSION__ACCOUNT_RECIPIENTS_PER_HOUR", "50", "submission"),
    ("MAILPLANE_SECURITY__LIMIT_EXEMPT_NETWORKS", '["not-a-net"]',
     "security.limit_exempt_networks"),
    ("MAILPLANE_POP3__MAX_CONNECTIONS_PER_IP", "0", "pop3.max_connections_per_ip"),
    ("MAILPLANE_API__PRESSURE_THRESHOLD", "1.5", "api.pressure_threshold"),
])
def test_a_bad_limit_stops_start_up_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, key: str,
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        load_settings()


def test_repeats_are_folded_into_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = ThrottledLog(logging.getLogger("test.throttle"), interval_seconds=60,
                            clock=lambda: now[0])
    caplog.set_level(logging.INFO)
    written = [throttle.warning("key", "refused %s", n) for n in range(1000)]
    assert written.count(True) == 1
    now[0] = 61.0
    assert throttle.warning("key", "refused %s", "again")
    assert throttle.warning("other", "another kind")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused 0", "refused again (and 999 more like it in the last 60 s)",
                     "another kind"]


def test_a_burst_of_lines_per_interval_then_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = ThrottledLog(logging.getLogger("test.burst"), interval_seconds=60, burst=3,
                            clock=lambda: now[0])
    caplog.set_level(logging.INFO)
    written = [throttle.info("key", "failed %s", n) for n in range(100)]
    assert written == [True] * 3 + [False] * 97
    now[0] = 30.0
    assert not throttle.info("key", "still folded")  # the burst is per interval
    now[0] = 61.0
    assert [throttle.info("key", "failed %s", n) for n in ("a", "b", "c", "d")] == [
        True, True, True, False]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["failed 0", "failed 1", "failed 2",
                     "failed a (and 98 more like it in the last 60 s)", "failed b", "failed c"]
    with pytest.raises(ValueError):
        ThrottledLog(logging.getLogger("test.burst"), burst=0)


def test_per_ip_places_are_counted_and_given_back() -> None:
    limiter = ConnectionLimiter(ConnectionLimits("t", max_connections=4, max_per_ip=2))
    first, second = limiter.admit("192.0.2.1"), limiter.admit("::ffff:192.0.2.1")
    assert limiter.admit("192.0.2.1") is Refusal.IP_CONNECTIONS
    other = [limiter.admit("2001:db8::1"), limiter.admit("2001:db8::2")]  # one /64
    assert limiter.admit("192.0.2.9") is Refusal.LISTENER_FULL
    assert limiter.admit("2001:db8::3") is Refusal.LISTENER_FULL
    for ticket in (first, second, *other):
        assert not isinstance(ticket, Refusal)
        ticket.release()
        ticket.release()  # idempotent
    assert limiter.active == 0 and limiter.per_ip("192.0.2.1") == 0
    assert client_key("2001:db8::5") == "2001:db8::/64"


def test_exempt_networks_skip_the_per_ip_limits_but_not_the_listener_limit() -> None:
    from mailplane.net.limits import parse_networks

    limiter = ConnectionLimiter(ConnectionLimits(
        "t", max_connections=3, max_per_ip=1, rate_per_ip_per_minute=1,
        exempt=parse_networks(["10.0.0.0/8"])))
    assert [isinstance(limiter.admit("10.1.2.3"), Refusal) for _ in range(3)] == [False] * 3
    assert limiter.admit("10.1.2.3") is Refusal.LISTENER_FULL


def test_the_connection_rate_per_ip_is_a_sliding_minute() -> None:
    now = [0.0]
    limiter = ConnectionLimiter(ConnectionLimits("t", 100, 100, rate_per_ip_per_minute=3),
                                clock=lambda: now[0])
    for _ in range(3):
        ticket = limiter.admit("192.0.2.1")
        assert not isinstance(ticket, Refusal)
        ticket.release()
    assert limiter.admit("192.0.2.1") is Refusal.IP_RATE
    now[0] = 60.0
    assert not isinstance(limiter.admit("192.0.2.1"), Refusal)


def test_connection_limits_are_fitted_into_the_descriptor_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings()
    roles = ("mx", "submission", "pop3", "api")
    assert fit_connection_limits(settings, roles, 100_000) is settings
    fitted = fit_connection_limits(settings, roles, 1024 + FD_RESERVE)
    total = sum(getattr(fitted, name).max_connections for name in roles)
    assert total <= 1024 and fitted.mx.max_connections == 256
    assert "mx.max_connections lowered from 1000 to 256" in caplog.text


def _nested(levels: int) -> bytes:
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n'
                       % (i, i) for i in range(levels))
    return b"Subject: x\r\n" + opening + b"Content-Type: text/plain\r\n\r\nleaf\r\n"


def test_the_bounded_parse_stops_at_the_limits_and_never_recurses_out() -> None:
    check_structure(_nested(9), MimeLimits(max_depth=10, max_parts=100))
    with pytest.raises(MimeTooComplex):
        check_structure(_nested(10), MimeLimits(max_depth=10, max_parts=100))
    with pytest.raises(MimeTooComplex):
        parse(_nested(100_000))  # the stdlib alone raises RecursionError long before


def test_leaves_come_in_walk_order() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\nContent-Type: text/plain'
           b'\r\n\r\none\r\n--o\r\nContent-Type: multipart/alternative; boundary="i"\r\n\r\n'
           b"--i\r\nContent-Type: text/plain\r\n\r\ntwo\r\n--i\r\nContent-Type: text/html\r\n"
           b"\r\nthree\r\n--i--\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n"
           b"\r\nfour\r\n--o--\r\n")
    message = parse(raw)
    walked = [p for p in message.walk() if not p.is_multipart()]
    assert leaf_parts(message) == walked
    assert [p.get_payload().strip() for p in leaf_parts(message)] == [
        "one", "two", "three", "four"]


async def test_a_user_name_with_a_nul_is_a_counted_failure_on_both_databases(
    db_settings: Any,
) -> None:
    """PostgreSQL refuses a NUL in text: such a name (POP3 ``USER a\\0b``) once made the
    login answer "temporarily unavailable" and went uncounted."""
    from mailplane.auth.credentials import Authenticator, AuthOutcome
    from mailplane.auth.login_guard import LoginGuard, ip_key
    from mailplane.auth.passwords import PasswordHashing
    from mailplane.clock import FrozenClock
    from mailplane.storage.db import make_engine, make_session_factory

    engine = make_engine(db_settings.database_url)
    try:
        factory = make_session_factory(engine)
        guard = LoginGuard(factory, FrozenClock(), max_failures=3, lock_seconds=60,
                           base_delay_seconds=0)
        auth = Authenticator(factory, PasswordHashing(db_settings.security), guard)
        result = await auth.authenticate("m1\x00' OR 1=1", "x", peer_ip="192.0.2.3",
                                         listener="test")
        assert result.outcome is AuthOutcome.BAD_CREDENTIALS
        assert await guard.failures(key=ip_key("192.0.2.3")) == 1
    finally:
        engine.dispose()


def test_an_ipv6_client_is_counted_by_its_64_block() -> None:
    from mailplane.auth.login_guard import ip_key

    assert ip_key("2001:db8:1:2::1") == ip_key("2001:db8:1:2:ffff::9") == "ip:2001:db8:1:2::/64"
    assert ip_key("::ffff:192.0.2.1") == ip_key("192.0.2.1") == "ip:192.0.2.1"


@hyp_settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"x", b"\r\n", b"\n--b", b"\r--", b"Message/rfc822",
                                 b"DIGEST", b"delivery-STATUS", b"messag", b"e/"]),
                max_size=60))
def test_the_cheap_bound_counts_nesting_types_as_one_case_blind_search_would(
    pieces: list[bytes],
) -> None:
    """The lower-cased literal counts equal a case-insensitive regex's matches."""
    raw = b"".join(pieces)
    pattern = re.compile(rb"message/|digest|delivery-status", re.IGNORECASE)
    lines = raw.count(b"\n--") + raw.count(b"\r--")
    for budget in range(0, 12):
        limits = MimeLimits(max_depth=budget + 1, max_parts=budget + 1)
        expected = lines + sum(1 for _ in pattern.finditer(raw)) <= budget
        assert within_counted_bound(raw, limits) is expected


_HEADER_LINES = [
    b"Subject: x", b"Message-ID: <message@example>", b"MIME-Version: 1.0",
    b"Content-Type: text/plain", b"Content-Type: text/plain; name=message.txt",
    b"Content-Type: multipart/mixed; boundary=b", b"content-TYPE: Multipart/Mixed; boundary=b",
    b"Content-Type: message/rfc822", b"Content-Type: message\r\n /rfc822",
    b"Content-Type:\r\n\tmultipart/mixed; boundary=b", b"Content-Type: (c) multipart/digest",
    b"Content-Type: multipart(c)/mixed; boundary=b", b"Content-Type : multipart/mixed",
    b"X-Content-Type: multipart/mixed", b"no colon here", b" a folded continuation",
    b"Content-Type: text/plain\rContent-Type: multipart/mixed; boundary=b",
]
#: Five levels of both kinds of nesting: whatever the top level says, this body opens
#: entities if the parser treats the top level as multipart or message/*.
_NESTED_BODY = (b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n") * 5 + b"--b--\r\n"


@hyp_settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_HEADER_LINES), max_size=6),
       st.sampled_from([b"\r\n", b"\n"]))
def test_a_top_level_that_cannot_nest_is_one_leaf_to_every_parser(
    headers: list[bytes], newline: bytes,
) -> None:
    """The shortcut of the cheap bound (no parse, the header block only) holds for the
    compat32 parser and for policy.default's, whose Content-Type reading differs
    (comments, folding before the slash)."""
    raw = newline.join([*headers, b"", _NESTED_BODY.replace(b"\r\n", newline)])
    if not top_level_cannot_nest(raw):
        return
    for policy in (email.policy.compat32, email.policy.default):
        message = BytesParser(policy=policy).parsebytes(raw)
        assert not message.is_multipart(), (policy, raw[:200])
    assert within_cheap_bound(raw, MimeLimits(max_depth=2, max_parts=2))


def test_the_shortcut_is_taken_for_plain_mail_and_not_for_multipart() -> None:
    plain = b"Subject: hi\r\nMessage-ID: <message@x>\r\n\r\n" + _NESTED_BODY
    assert top_level_cannot_nest(plain)
    assert not top_level_cannot_nest(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n")
    assert not top_level_cannot_nest(b"Content-Type: Message\r\n /rfc822\r\n\r\n")
