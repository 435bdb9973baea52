"""Country lookup backends (SPEC §7: offline database from a package; operator .mmdb)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailplane.config.sections import OverseasConfig
from mailplane.filters.geo import (
    BundledCountryLookup,
    MmdbCountryLookup,
    OverrideCountryLookup,
    build_country_lookup,
)


def test_bundled_data_knows_well_known_addresses() -> None:
    lookup = BundledCountryLookup()
    assert lookup.country("8.8.8.8") == "US"
    assert lookup.country("::ffff:8.8.8.8") == "US"  # IPv4 seen on a dual-stack socket
    assert lookup.country("127.0.0.1") is None
    assert lookup.country("not an address") is None


def test_overrides_win_most_specific_first_then_fall_back() -> None:
    lookup = OverrideCountryLookup({"127.0.0.0/8": "us", "127.0.0.2/32": "FR"},
                                   BundledCountryLookup())
    assert lookup.country("127.0.0.1") == "US"
    assert lookup.country("127.0.0.2") == "FR"
    assert lookup.country("8.8.8.8") == "US"


def test_override_with_a_bad_country_code_fails_naming_the_key() -> None:
    with pytest.raises(ValueError, match="country_overrides"):
        OverrideCountryLookup({"10.0.0.0/8": "Japan"}, BundledCountryLookup())


def test_operator_mmdb_in_both_schemas(tmp_path: Path) -> None:
    mmdb_writer = pytest.importorskip("mmdb_writer", reason="mmdb-writer not installed")
    from netaddr import IPSet  # type: ignore[import-untyped]

    writer = mmdb_writer.MMDBWriter(ip_version=6, database_type="GeoIP2-Country",
                                    ipv4_compatible=True)
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "FR"}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country_code": "de"})
    path = tmp_path / "country.mmdb"
    writer.to_db_file(str(path))

    lookup = build_country_lookup(OverseasConfig(mmdb_path=str(path)))
    assert isinstance(lookup, MmdbCountryLookup)
    assert lookup.country("203.0.113.7") == "FR"  # MaxMind country.iso_code
    assert lookup.country("198.51.100.7") == "DE"  # flat country_code
    assert lookup.country("192.0.2.1") is None
    lookup.close()
