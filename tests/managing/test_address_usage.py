"""The address list carries each mailbox's usage and quota (issue 16: the portal's quota
bar; SPEC §8)."""

from __future__ import annotations

from mailplane.mailstore.paths import mailbox_dir
from tests.factories.api import ApiHarness


def test_the_address_list_shows_usage_and_quota(api: ApiHarness) -> None:
    api.create_contract("C0001")
    api.create_address("C0001")
    api.create_address("C0001", local_part="hanako", subdomain="a01")
    new = mailbox_dir(api.settings.maildir_root, "taro@e06.example.net") / "new"
    new.mkdir(parents=True)
    (new / "1700000000.M1P1Q1.host,S=300000").write_bytes(b"x")
    (new / "1700000001.M1P1Q2.host,S=200000").write_bytes(b"x")
    rows = {row["address"]: row for row in
            api.operator.get("/v1/contracts/C0001/addresses").json()["addresses"]}
    quota = api.settings.addresses.default_quota_bytes
    assert rows["taro@e06.example.net"]["mailbox"] == {"used_bytes": 500000,
                                                       "quota_bytes": quota}
    assert rows["hanako@a01.example.net"]["mailbox"] == {"used_bytes": 0, "quota_bytes": quota}


def test_the_usage_counts_the_quarantine_too(api: ApiHarness) -> None:
    """Issue 20: quarantined mail counts against the quota (what the MX refuses with
    452 is what the customer sees)."""
    api.create_contract("C0001")
    api.create_address("C0001")
    new = mailbox_dir(api.settings.maildir_root, "taro@e06.example.net") / "new"
    new.mkdir(parents=True)
    (new / "1700000000.M1P1Q1.host,S=300000").write_bytes(b"x")
    quarantine = mailbox_dir(api.settings.quarantine_root, "taro@e06.example.net")
    quarantine.mkdir(parents=True)
    (quarantine / "1700000002-0123456789abcdef.eml").write_bytes(b"q" * 4096)
    [row] = api.operator.get("/v1/contracts/C0001/addresses").json()["addresses"]
    assert row["mailbox"]["used_bytes"] == 300000 + 4096
