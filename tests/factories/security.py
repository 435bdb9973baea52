"""Security suite fixtures: one real node (``mailplane serve``) per module with two
contracts, each with one address and a customer key, and the node's log captured."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.durability.harness import wait_until_accepting
from tests.factories.node import Node, build_node


@dataclass
class Tenant:
    contract: str
    address: str
    pop_account: str
    password: str
    key: str


@dataclass
class SecureNode:
    node: Node
    tenants: dict[str, Tenant]
    secrets: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def secure_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureNode]:
    node = build_node(tmp_path_factory.mktemp("secure"),
                      MAILPLANE_SECURITY__LOGIN_MAX_FAILURES="3",
                      MAILPLANE_SECURITY__LOGIN_BASE_DELAY_SECONDS="0",
                      MAILPLANE_SECURITY__LOGIN_MAX_DELAY_SECONDS="0",
                      MAILPLANE_LOG_LEVEL="DEBUG")
    node.start()
    api = node.api()
    secrets = [node.operator_key]
    tenants: dict[str, Tenant] = {}
    for number, sub in (("C1", "s01"), ("C2", "s02")):
        made = api.post("/v1/contracts", json={"customer_number": number,
                                                "contact_email": f"{number}@contact.example.jp"})
        assert made.status_code == 201, made.text
        created: dict[str, Any] = api.post(
            f"/v1/contracts/{number}/addresses",
            json={"local_part": "user", "subdomain": sub, "accept_terms": True}).json()
        key = api.post("/v1/api-keys", json={"role": "customer", "contract": number})
        assert key.status_code == 201, key.text
        tenant = Tenant(number, created["address"]["address"], created["pop_account"],
                        created["initial_password"]["password"], key.json()["api_key"])
        tenants[number] = tenant
        secrets += [tenant.password, tenant.key]
    wait_until_accepting(node, [t.address for t in tenants.values()])
    yield SecureNode(node, tenants, secrets)
    for client in node.clients:
        client.close()
    node.stop(signal.SIGKILL)
