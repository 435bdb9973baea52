"""A login for a user that does not exist costs the same argon2 check as a real one and
fails (SPEC §8a): one rule for POP3, submission and the portal (PasswordHashing)."""

from __future__ import annotations

from mailplane.auth.passwords import PasswordHashing
from mailplane.config.sections import SecurityConfig

CHEAP = SecurityConfig(argon2_time_cost=1, argon2_memory_kib=64)


class CountingHashing(PasswordHashing):
    def __init__(self) -> None:
        super().__init__(CHEAP)
        self.checked: list[str] = []

    def verify(self, hashed: str, secret: str) -> bool:
        self.checked.append(hashed)
        return super().verify(hashed, secret)


def test_no_hash_costs_a_real_check_against_one_throwaway_hash_and_fails() -> None:
    hashing = CountingHashing()
    assert hashing.verify_or_spend(None, "anything") is False
    assert hashing.verify_or_spend(None, "anything else") is False
    first, second = hashing.checked
    assert first == second and first.startswith("$argon2id$")


def test_a_real_hash_is_checked_as_it_is() -> None:
    hashing = CountingHashing()
    hashed = hashing.hash("Password-1")
    assert hashing.verify_or_spend(hashed, "Password-1")
    assert not hashing.verify_or_spend(hashed, "Password-2")
    assert hashing.checked == [hashed, hashed]
