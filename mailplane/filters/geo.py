"""Client IP → ISO country code, offline (SPEC §7: "an offline IP-to-country database
installed from a package").

Backends behind one :class:`CountryLookup` protocol:

- :class:`BundledCountryLookup` — the ``iptocc`` package (RIR delegation data compiled into
  the wheel; a lookup is a few microseconds, so it runs on the event loop);
- :class:`MmdbCountryLookup` — an operator's ``.mmdb`` (``overseas.mmdb_path``) read with
  ``maxminddb`` (memory-mapped, also microseconds), accepting both the MaxMind GeoIP2/GeoLite2
  schema ``{"country": {"iso_code": "JP"}}`` and the flat ``{"country_code": "JP"}`` one that
  DB-IP, IPinfo and ipverse country databases use;
- :class:`OverrideCountryLookup` — operator-visible CIDR → country overrides checked first
  (``overseas.country_overrides``): a VPN or CGNAT range the databases place abroad, a lab
  network, and the test suite making a loopback connection look foreign.

Trusted networks are not a lookup concern: :mod:`mailplane.filters.overseas_window` allows
them before the country is even considered.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import iptocc

from mailplane.config.sections import OverseasConfig

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CountryLookup(Protocol):
    """Country of an IP address, or None when the database does not know it."""

    name: str

    def country(self, ip: str) -> str | None: ...


def _normalise_code(value: object) -> str | None:
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        parsed = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    # An IPv4 client seen on a dual-stack socket arrives as ::ffff:a.b.c.d.
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


class BundledCountryLookup:
    """The default: ``iptocc``'s built-in data, no file to manage."""

    name = "iptocc"

    def country(self, ip: str) -> str | None:
        parsed = _parse_ip(ip)
        if parsed is None:
            return None
        return _normalise_code(iptocc.country_code(str(parsed)))


class MmdbCountryLookup:
    """An operator-supplied MaxMind DB file (opened once, memory-mapped)."""

    name = "mmdb"

    def __init__(self, path: Path | str) -> None:
        import maxminddb

        self.path = Path(path)
        self._reader = maxminddb.open_database(str(self.path))

    def country(self, ip: str) -> str | None:
        parsed = _parse_ip(ip)
        if parsed is None:
            return None
        try:
            record: Any = self._reader.get(str(parsed))
        except ValueError:  # an IPv6 lookup in an IPv4-only database
            return None
        if not isinstance(record, dict):
            return None
        country = record.get("country")
        if isinstance(country, dict) and "iso_code" in country:
            return _normalise_code(country["iso_code"])
        return _normalise_code(record.get("country_code"))

    def close(self) -> None:
        self._reader.close()


class OverrideCountryLookup:
    """CIDR → country overrides, most specific network first, then ``fallback``."""

    def __init__(self, overrides: Mapping[str, str], fallback: CountryLookup) -> None:
        parsed: list[tuple[Network, str]] = []
        for cidr, code in overrides.items():
            country = _normalise_code(code)
            if country is None:
                raise ValueError(f"overseas.country_overrides: {code!r} is not a country code")
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"overseas.country_overrides: {exc}") from None
            parsed.append((network, country))
        parsed.sort(key=lambda item: item[0].prefixlen, reverse=True)
        self._overrides = tuple(parsed)
        self.fallback = fallback
        self.name = f"overrides+{fallback.name}"

    def country(self, ip: str) -> str | None:
        parsed = _parse_ip(ip)
        if parsed is not None:
            for network, country in self._overrides:
                if parsed.version == network.version and parsed in network:
                    return country
        return self.fallback.country(ip)


def parse_networks(cidrs: list[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def in_networks(ip: str, networks: tuple[Network, ...]) -> bool:
    parsed = _parse_ip(ip)
    if parsed is None:
        return False
    return any(parsed.version == n.version and parsed in n for n in networks)


def build_country_lookup(
    overseas: OverseasConfig, *, overrides: Mapping[str, str] | None = None
) -> CountryLookup:
    """The configured backend (``mmdb_path`` if set, else the bundled data), wrapped in the
    overrides (default ``overseas.country_overrides``).  Blocking (opens the file): call
    at start-up."""
    backend: CountryLookup
    if overseas.mmdb_path:
        backend = MmdbCountryLookup(overseas.mmdb_path)
    else:
        backend = BundledCountryLookup()
    if overrides is None:
        overrides = overseas.country_overrides
    if overrides:
        backend = OverrideCountryLookup(overrides, backend)
    log.info("country lookup: %s", backend.name)
    return backend
