"""The overseas-send window (SPEC §7, manual L4639-4677), decided at MAIL FROM.

Pure: the peer's country is looked up by the caller (:mod:`mailplane.filters.geo`); this module only
decides, in this order:

0. a peer in ``[webmail] networks`` is どこでもメール sending for the customer: the window
   is for the customer's own mail program, and the manual sends customers abroad to the
   webmail instead (L4645-4647, SPEC §9b) — allowed, and only this check is skipped;
1. a peer in a trusted network (loopback, the ISP's own ranges) is always allowed;
2. a peer in a home country (default ``JP``) is allowed;
3. an unknown country follows ``overseas.unknown_country`` (default allow, and the caller
   logs it);
4. anywhere else is allowed only while the address's window is ON (``now < expires_at``,
   so it closes by itself once the week is over).

The window itself (L4650-4660) has its one home here too: :func:`window_open` is what the
MX decides with and what the API shows, and :func:`expiry_after` is the switch — ON opens
a fresh week from that moment, ON while already open keeps the running week (a retried
request must not silently move the end date), OFF closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from mailplane.clock import as_utc
from mailplane.config.sections import OverseasConfig
from mailplane.filters.geo import Network, in_networks, parse_networks
from mailplane.policy.model import AddressPolicy

Reason = Literal[
    "webmail",
    "trusted_network",
    "home_country",
    "unknown_country_allowed",
    "unknown_country_denied",
    "window_open",
    "window_closed",
]


def window_open(expires_at: datetime | None, now: datetime) -> bool:
    """The window is ON until ``expires_at``; it returns to OFF by itself (SPEC §7)."""
    return expires_at is not None and now < as_utc(expires_at)


def expiry_after(enable: bool, *, expires_at: datetime | None, now: datetime,
                 window_days: int) -> datetime | None:
    """The window's end after the customer's switch: ``enable`` starts a fresh week unless
    one is running (kept as is), ``not enable`` closes it."""
    if not enable:
        return None
    if window_open(expires_at, now):
        return expires_at
    return now + timedelta(days=window_days)


@dataclass(frozen=True, slots=True)
class OverseasVerdict:
    allowed: bool
    reason: Reason
    country: str | None


@dataclass(frozen=True, slots=True)
class OverseasRule:
    home_countries: frozenset[str]
    trusted_networks: tuple[Network, ...]
    unknown_country: Literal["allow", "deny"]
    webmail_networks: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, overseas: OverseasConfig,
                      webmail_networks: list[str] | None = None) -> OverseasRule:
        return cls(
            home_countries=frozenset(c.upper() for c in overseas.home_countries),
            trusted_networks=parse_networks(overseas.trusted_networks),
            unknown_country=overseas.unknown_country,
            webmail_networks=parse_networks(webmail_networks or []),
        )

    def is_trusted(self, peer_ip: str) -> bool:
        """No country needed: a trusted network, or the webmail."""
        return (in_networks(peer_ip, self.trusted_networks)
                or in_networks(peer_ip, self.webmail_networks))

    def decide(
        self, *, peer_ip: str, country: str | None, policy: AddressPolicy, now: datetime
    ) -> OverseasVerdict:
        if in_networks(peer_ip, self.webmail_networks):
            return OverseasVerdict(True, "webmail", country)
        if in_networks(peer_ip, self.trusted_networks):
            return OverseasVerdict(True, "trusted_network", country)
        if country is None:
            if self.unknown_country == "allow":
                return OverseasVerdict(True, "unknown_country_allowed", None)
            return OverseasVerdict(False, "unknown_country_denied", None)
        if country.upper() in self.home_countries:
            return OverseasVerdict(True, "home_country", country)
        if window_open(policy.overseas_expires_at, now):
            return OverseasVerdict(True, "window_open", country)
        return OverseasVerdict(False, "window_closed", country)
