"""The two pure submission filters: overseas window and sender ownership."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailplane.config.sections import OverseasConfig
from mailplane.filters.overseas_window import OverseasRule
from mailplane.filters.sender_ownership import envelope_sender_owned, header_from_owned
from mailplane.policy.model import AddressPolicy

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
RULE = OverseasRule.from_settings(OverseasConfig(trusted_networks=["10.0.0.0/8"]))


def _policy(expires: datetime | None = None) -> AddressPolicy:
    return AddressPolicy(address="taro_1@e06.example.net", address_id=1, contract_id=1,
                         pop_account="m1000001", status="active", overseas_expires_at=expires)


def test_foreign_country_needs_an_open_window() -> None:
    closed = RULE.decide(peer_ip="8.8.8.8", country="US", policy=_policy(), now=NOW)
    assert (closed.allowed, closed.reason, closed.country) == (False, "window_closed", "US")
    open_ = RULE.decide(peer_ip="8.8.8.8", country="US",
                        policy=_policy(NOW + timedelta(days=7)), now=NOW)
    assert (open_.allowed, open_.reason) == (True, "window_open")


def test_window_closes_by_itself_at_expiry() -> None:
    verdict = RULE.decide(peer_ip="8.8.8.8", country="US", policy=_policy(NOW), now=NOW)
    assert not verdict.allowed


def test_trusted_network_and_home_country_are_always_allowed() -> None:
    assert RULE.decide(peer_ip="10.1.2.3", country="US", policy=_policy(), now=NOW).allowed
    assert RULE.decide(peer_ip="133.242.0.1", country="JP", policy=_policy(), now=NOW).allowed


def test_unknown_country_follows_configuration() -> None:
    deny = OverseasRule.from_settings(OverseasConfig(unknown_country="deny"))
    assert RULE.decide(peer_ip="192.0.2.1", country=None, policy=_policy(), now=NOW).allowed
    assert not deny.decide(peer_ip="192.0.2.1", country=None, policy=_policy(), now=NOW).allowed


def test_the_webmail_hosts_are_not_subject_to_the_window() -> None:
    """どこでもメール (001 L4645-4647): its hosts send for customers abroad with the
    window closed; only they — a client next to them is still refused."""
    rule = OverseasRule.from_settings(OverseasConfig(trusted_networks=[]),
                                      ["198.51.100.20/32", "2001:db8:20::/64"])
    for webmail in ("198.51.100.20", "::ffff:198.51.100.20", "2001:db8:20::5"):
        verdict = rule.decide(peer_ip=webmail, country="US", policy=_policy(), now=NOW)
        assert (verdict.allowed, verdict.reason) == (True, "webmail")
        assert rule.is_trusted(webmail)  # no country lookup needed
    neighbour = rule.decide(peer_ip="198.51.100.21", country="US", policy=_policy(), now=NOW)
    assert (neighbour.allowed, neighbour.reason) == (False, "window_closed")
    assert not RULE.decide(peer_ip="198.51.100.20", country="US", policy=_policy(),
                           now=NOW).allowed  # without [webmail] networks


def test_sender_must_be_the_authenticated_address_case_insensitively() -> None:
    me = "taro_1@e06.example.net"
    assert envelope_sender_owned(authenticated=me, mail_from="<Taro_1@E06.example.net>")
    assert not envelope_sender_owned(authenticated=me, mail_from="hanako@e07.example.net")
    assert not envelope_sender_owned(authenticated=me, mail_from="")
    assert header_from_owned(authenticated=me, header_from=["TARO_1@e06.example.net"])
    assert not header_from_owned(authenticated=me, header_from=[me, "x@evil.example"])
    assert not header_from_owned(authenticated=me, header_from=[])
