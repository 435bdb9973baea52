"""SRS0/SRS1 (SPEC §5): bounces to a forwarded copy reach the original sender."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailplane.clock import FrozenClock
from mailplane.mail.srs import Srs, SrsError


def make_srs(clock: FrozenClock, domain: str = "fwd.example.net", secret: str = "k1") -> Srs:
    return Srs(secret=secret, domain=domain, max_age_days=21, now=clock.now)


def test_srs0_round_trip() -> None:
    srs = make_srs(FrozenClock())
    rewritten = srs.forward("Alice.Smith@Sender.example")
    assert rewritten.startswith("SRS0=")
    assert rewritten.endswith("@fwd.example.net")
    assert "=Sender.example=Alice.Smith@" in rewritten
    assert srs.reverse(rewritten) == "Alice.Smith@Sender.example"


def test_reverse_is_case_insensitive() -> None:
    srs = make_srs(FrozenClock())
    rewritten = srs.forward("alice@sender.example")
    assert srs.reverse(rewritten.lower()) == "alice@sender.example"
    assert srs.reverse(rewritten.upper()).lower() == "alice@sender.example"


def test_tampered_hash_or_address_is_refused() -> None:
    srs = make_srs(FrozenClock())
    rewritten = srs.forward("alice@sender.example")
    tag, digest, rest = rewritten.split("=", 2)
    forged_digest = ("A" if digest[0] != "A" else "B") + digest[1:]
    with pytest.raises(SrsError):
        srs.reverse(f"{tag}={forged_digest}={rest}")
    with pytest.raises(SrsError):
        srs.reverse(rewritten.replace("=alice@", "=mallory@"))
    with pytest.raises(SrsError):
        make_srs(FrozenClock(), secret="other").reverse(rewritten)


def test_expired_address_is_refused() -> None:
    clock = FrozenClock()
    srs = make_srs(clock)
    rewritten = srs.forward("alice@sender.example")
    clock.advance(timedelta(days=21))
    assert srs.reverse(rewritten) == "alice@sender.example"
    clock.advance(timedelta(days=1))
    with pytest.raises(SrsError, match="expired"):
        srs.reverse(rewritten)


def test_timestamp_wraps_around_1024_days() -> None:
    clock = FrozenClock()
    srs = make_srs(clock)
    clock.advance(timedelta(days=1023 - (int(clock.now().timestamp()) // 86400) % 1024))
    rewritten = srs.forward("alice@sender.example")
    clock.advance(timedelta(days=2))  # day number wrapped to 1
    assert srs.reverse(rewritten) == "alice@sender.example"


def test_srs1_for_an_srs0_sender_points_back_at_the_first_forwarder() -> None:
    clock = FrozenClock()
    first = make_srs(clock, domain="first.example", secret="first-secret")
    ours = make_srs(clock)
    srs0 = first.forward("alice@sender.example")

    srs1 = ours.forward(srs0)
    assert srs1.startswith("SRS1=")
    assert "=first.example==" in srs1
    assert srs1.endswith("@fwd.example.net")
    back_to_first = ours.reverse(srs1)
    assert back_to_first.lower() == srs0.lower()
    assert first.reverse(back_to_first) == "alice@sender.example"
    # Forwarding an SRS1 address again keeps it short (re-hashed, not nested).
    third = make_srs(clock, domain="third.example", secret="t")
    again = third.forward(srs1)
    assert again.startswith("SRS1=") and "=first.example==" in again
    assert third.reverse(again).lower() == srs0.lower()


def test_null_sender_is_never_rewritten() -> None:
    srs = make_srs(FrozenClock())
    assert srs.forward("") == ""
    assert srs.forward("<>") == ""


@pytest.mark.parametrize(
    "address",
    ["alice@fwd.example.net", "SRS0=abcd@fwd.example.net", "SRS0=x=y=z=w@other.example",
     "SRS2=a=b=c=d@fwd.example.net", "SRS1=abcd@fwd.example.net"],
)
def test_malformed_or_foreign_addresses_are_refused(address: str) -> None:
    with pytest.raises(SrsError):
        make_srs(FrozenClock()).reverse(address)


def test_the_hash_is_ten_base32_characters_and_the_old_four_character_form_is_refused(
) -> None:
    """Issue 20: 4 base64 characters compared ignoring case left about 2 million values;
    10 base32 characters are 50 bits, case-insensitive by construction."""
    import base64
    import hashlib
    import hmac

    clock = FrozenClock()
    srs = make_srs(clock)
    rewritten = srs.forward("alice@sender.example")
    _tag, digest, stamp, host, local_at = rewritten.split("=", 4)
    assert len(digest) == 10
    assert set(digest) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    assert srs.reverse(rewritten.lower()) == "alice@sender.example"
    # What an earlier release emitted for the same sender that day (libsrs2's hash).
    mac = hmac.new(b"k1", digestmod=hashlib.sha1)
    for part in (stamp, host, local_at.partition("@")[0]):
        mac.update(part.lower().encode())
    old = base64.b64encode(mac.digest()).decode()[:4]
    with pytest.raises(SrsError):
        srs.reverse(f"SRS0={old}={stamp}={host}={local_at}")


def test_an_srs_address_longer_than_a_path_may_be_is_not_made() -> None:
    srs = make_srs(FrozenClock())
    with pytest.raises(SrsError, match="RFC 5321"):
        srs.forward("a" * 200 + "@" + "b" * 50 + ".example")
