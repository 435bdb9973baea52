"""API fixtures: the real app served by uvicorn, httpx clients per role, a frozen clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from mailplane.api.app import create_app
from mailplane.auth.api_keys import issue_api_key
from mailplane.clock import FrozenClock
from mailplane.config.settings import Settings
from mailplane.storage.db import make_engine, make_session_factory
from tests.conftest import free_port
from tests.factories.servers import run_api


@dataclass
class ApiHarness:
    """A running API plus helpers to create contracts, addresses and keys over HTTP."""

    base_url: str
    settings: Settings
    clock: FrozenClock
    session_factory: Any
    operator_key: str
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    @property
    def operator(self) -> httpx.Client:
        return self.client(self.operator_key)

    def create_contract(self, customer_number: str = "C0001", **extra: Any) -> dict[str, Any]:
        response = self.operator.post(
            "/v1/contracts",
            json={"customer_number": customer_number,
                  "contact_email": f"{customer_number.lower()}@contact.example.jp", **extra},
        )
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    def create_key(self, role: str, contract: str | None = None,
                   address: str | None = None) -> str:
        body: dict[str, Any] = {"role": role}
        if contract:
            body["contract"] = contract
        if address:
            body["address"] = address
        response = self.operator.post("/v1/api-keys", json=body)
        assert response.status_code == 201, response.text
        key: str = response.json()["api_key"]
        return key

    def create_address(self, contract: str, local_part: str = "taro", subdomain: str = "e06",
                       **extra: Any) -> dict[str, Any]:
        body = {"local_part": local_part, "subdomain": subdomain, "virus_check": True,
                "accept_terms": True, **extra}
        response = self.operator.post(f"/v1/contracts/{contract}/addresses", json=body)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data


ApiFactory = Callable[..., ApiHarness]


@pytest.fixture
def api_factory(make_settings: Callable[..., Settings]) -> Iterator[ApiFactory]:
    """Start the API on a free port against a freshly migrated database (any URL)."""
    from mailplane.storage.migrate import upgrade

    stack: list[Any] = []
    harnesses: list[ApiHarness] = []

    def factory(**overrides: Any) -> ApiHarness:
        settings = make_settings(**overrides)
        upgrade(settings.database_url)
        clock = FrozenClock()
        engine = make_engine(settings.database_url)
        session_factory = make_session_factory(engine)
        with session_factory() as session:
            _key_id, operator_key = issue_api_key(session, role="operator", now=clock.now())
            session.commit()
        app = create_app(settings, clock=clock, session_factory=session_factory)
        ctx = run_api(app, free_port())
        running = ctx.__enter__()
        stack.append((ctx, engine))
        harness = ApiHarness(running.base_url, settings, clock, session_factory, operator_key)
        harnesses.append(harness)
        return harness

    yield factory
    for harness in harnesses:
        for client in harness.clients:
            client.close()
    for ctx, engine in reversed(stack):
        ctx.__exit__(None, None, None)
        engine.dispose()


@pytest.fixture
def api(api_factory: ApiFactory) -> ApiHarness:
    return api_factory()
