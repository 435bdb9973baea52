"""Helpers for attack tests: the same request many times at once, over real sockets.

Each call gets its own ``httpx.Client`` (its own TCP connection) and all of them wait on
one barrier, so the requests reach the server together instead of one after another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.factories.api import ApiFactory, ApiHarness

Call = Callable[[httpx.Client], httpx.Response]


def at_once(api: ApiHarness, key: str, calls: Sequence[Call]) -> list[httpx.Response]:
    """Run every call in its own thread and connection, released together (``key`` ""
    sends no key: calls anyone may make)."""
    barrier = threading.Barrier(len(calls))

    def run(call: Call) -> httpx.Response:
        with httpx.Client(base_url=api.base_url, timeout=120,
                          headers={"Authorization": f"Bearer {key}"} if key else {}) as client:
            barrier.wait()
            return call(client)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def codes(responses: Sequence[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in responses)


def assert_no_server_error(responses: Sequence[httpx.Response]) -> None:
    """A 500 is never an answer; a 503 must say when to come back."""
    for response in responses:
        assert response.status_code != 500, response.text
        if response.status_code in (429, 503):
            assert response.headers.get("Retry-After"), response.headers


@pytest.fixture(params=["sqlite", "postgresql"])
def any_api(request: pytest.FixtureRequest, api_factory: ApiFactory) -> ApiHarness:
    """The API over a real socket, on SQLite and again on PostgreSQL."""
    if request.param == "sqlite":
        return api_factory()
    return api_factory(database_url=request.getfixturevalue("pg_url"))


#: argon2 at its production cost (config defaults): each password hash takes tens of
#: milliseconds, as on the machine the races were reported from, so requests that check
#: and then write overlap instead of finishing one by one on a fast test setting.
PRODUCTION_ARGON2 = {"argon2_time_cost": 2, "argon2_memory_kib": 19456}


@pytest.fixture(params=["sqlite", "postgresql"])
def racing_api(request: pytest.FixtureRequest, api_factory: ApiFactory) -> ApiHarness:
    """:func:`any_api` with production argon2 cost."""
    if request.param == "sqlite":
        return api_factory(security=PRODUCTION_ARGON2)
    return api_factory(database_url=request.getfixturevalue("pg_url"),
                       security=PRODUCTION_ARGON2)


def json_of(response: httpx.Response) -> Any:
    return response.json()


def metric(api: ApiHarness, name: str, **labels: str) -> float:
    """A sample of the server's ``/metrics`` (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{api.base_url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def client_from(api: ApiHarness, source_ip: str, key: str | None = None) -> httpx.Client:
    """A client whose connections come from ``source_ip`` (any 127.x address on Linux
    loopback), so per-IP limits can tell it from other clients."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=api.base_url, headers=headers, timeout=60,
                        transport=httpx.HTTPTransport(local_address=source_ip))
