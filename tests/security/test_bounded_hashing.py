"""The API's argon2 work is capped (issue 15): past ``max_concurrent`` calls a caller waits
its bounded time and then gets a 503 with Retry-After, never an unbounded queue."""

from __future__ import annotations

import threading

import pytest

from mailplane.api.hashing import BoundedHashing, HashingBusy
from mailplane.config.sections import SecurityConfig

CHEAP = SecurityConfig(argon2_time_cost=1, argon2_memory_kib=64)


def test_hashing_past_the_cap_is_refused_with_503() -> None:
    hashing = BoundedHashing(CHEAP, max_concurrent=1, wait_seconds=0.01)
    hashing._turns.acquire()  # another request's argon2 is running
    with pytest.raises(HashingBusy) as refused:
        hashing.hash("Password-1")
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "1"}
    with pytest.raises(HashingBusy):
        hashing.verify("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "x")
    hashing._turns.release()
    assert hashing.verify(hashing.hash("Password-1"), "Password-1")


def test_a_waiting_caller_runs_when_a_turn_frees() -> None:
    hashing = BoundedHashing(CHEAP, max_concurrent=1, wait_seconds=60)
    hashing._turns.acquire()
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(
        hashing.verify(hashing.hash("Password-1"), "Password-1")))
    waiter.start()
    assert results == []
    hashing._turns.release()
    waiter.join(timeout=60)
    assert results == [True]
