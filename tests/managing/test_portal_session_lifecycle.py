"""A portal session lives only as long as what it signed in with (issue 20, finding 12;
SPEC §9a, §10), on two API nodes sharing one database, SQLite and PostgreSQL: a session
signed in on node A ends at its next request when, on node B, its password is changed or
reissued (by the portal, the API or the CLI), or its address or contract is suspended.
The session that changed its own password keeps going.  And a suspended contract is
read-only to customer keys and sessions: only the operator changes it (issue 22, 4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mailplane.node.address_admin import set_address_status_cli
from mailplane.node.seed import set_contract_password_cli
from tests.factories.api import ApiFactory, ApiHarness

CN = "C0001"
TARO = "taro@e06.example.net"
HANAKO = "hanako@e06.example.net"
SUSPENDED_JA = "ご契約が利用停止中のため変更できません。サポートセンターにお問い合わせください"


class Nodes:
    """Node A serves the customers' sessions; node B makes the changes."""

    def __init__(self, a: ApiHarness, b: ApiHarness) -> None:
        self.a, self.b = a, b
        self.pop: dict[str, str] = {}
        self.contract_password = ""

    def browser(self) -> httpx.Client:
        client = httpx.Client(base_url=self.a.base_url, timeout=30)
        self.a.clients.append(client)
        return client

    def sign_in(self, **body: str) -> tuple[httpx.Client, dict[str, str]]:
        client = self.browser()
        response = client.post("/v1/session", json=body)
        assert response.status_code == 200, response.text
        return client, {"X-CSRF-Token": response.json()["csrf_token"]}

    def holder(self) -> tuple[httpx.Client, dict[str, str]]:
        return self.sign_in(customer_number=CN, password=self.contract_password)

    def mailbox(self, address: str) -> tuple[httpx.Client, dict[str, str]]:
        return self.sign_in(address=address, password=self.pop[address])


def alive(client: httpx.Client) -> bool:
    response = client.get(f"/v1/contracts/{CN}")
    assert response.status_code in (200, 401), response.text
    if response.status_code == 401:
        assert response.json()["error"]["code"] == "session_expired"
    return response.status_code == 200


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def nodes(request: pytest.FixtureRequest, api_factory: ApiFactory) -> Nodes:
    overrides: dict[str, Any] = {}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    a = api_factory(**overrides)
    b = api_factory(**overrides)  # same tmp_path and URL: the same database
    assert a.settings.database_url == b.settings.database_url
    nodes = Nodes(a, b)
    b.create_contract(CN)
    for address in (TARO, HANAKO):
        created = b.create_address(CN, local_part=address.split("@")[0], subdomain="e06")
        nodes.pop[address] = created["initial_password"]["password"]
    nodes.contract_password = b.operator.post(f"/v1/contracts/{CN}/password").json()[
        "password"]
    return nodes


def test_a_reissue_by_the_operator_ends_that_address_s_sessions_only(nodes: Nodes) -> None:
    taro, _ = nodes.mailbox(TARO)
    hanako, _ = nodes.mailbox(HANAKO)
    holder, _ = nodes.holder()
    reissued = nodes.b.operator.post(f"/v1/contracts/{CN}/addresses/{TARO}/password/reissue")
    assert reissued.status_code == 200
    assert not alive(taro)
    assert alive(hanako) and alive(holder)
    # The thief's stolen password is gone, the new one signs in.
    assert nodes.browser().post("/v1/session", json={
        "address": TARO, "password": nodes.pop[TARO]}).status_code == 401
    nodes.pop[TARO] = reissued.json()["password"]
    assert alive(nodes.mailbox(TARO)[0])


def test_a_reissue_by_the_contract_holder_in_the_portal_ends_the_mailbox_session(
    nodes: Nodes,
) -> None:
    thief, _ = nodes.mailbox(TARO)
    holder, csrf = nodes.holder()
    response = holder.post(f"/v1/contracts/{CN}/addresses/{TARO}/password/reissue",
                           headers=csrf)
    assert response.status_code == 200
    assert not alive(thief)
    assert alive(holder)
    # The thief cannot change forwarding or reissue again with the dead session.
    changed = thief.put(f"/v1/contracts/{CN}/addresses/{TARO}/forwarding",
                        json={"destinations": ["thief@example.org"]})
    assert changed.status_code == 401


def test_a_change_ends_the_other_sessions_of_the_address_but_not_the_changer(
    nodes: Nodes,
) -> None:
    phone, _ = nodes.mailbox(TARO)
    pc, csrf = nodes.mailbox(TARO)
    changed = pc.post(f"/v1/contracts/{CN}/addresses/{TARO}/password", headers=csrf,
                      json={"current": nodes.pop[TARO], "new": "Brand.new7"})
    assert changed.status_code == 200, changed.text
    assert alive(pc)
    assert not alive(phone)
    # A change through the API with a customer key ends the changer's session too.
    key = nodes.b.create_key("customer", contract=CN)
    again = nodes.b.client(key).post(f"/v1/contracts/{CN}/addresses/{TARO}/password",
                                     json={"current": "Brand.new7", "new": "Other.new8"})
    assert again.status_code == 200, again.text
    assert not alive(pc)


@pytest.mark.parametrize("by", ["api", "cli"])
def test_a_new_contract_password_ends_the_contract_holder_s_sessions(nodes: Nodes,
                                                                    by: str) -> None:
    holder, _ = nodes.holder()
    mailbox, _ = nodes.mailbox(TARO)
    if by == "api":
        assert nodes.b.operator.post(f"/v1/contracts/{CN}/password").status_code == 201
    else:
        assert "shown once" in set_contract_password_cli(nodes.b.settings, customer_number=CN)
    assert not alive(holder)
    assert alive(mailbox)  # a mailbox user signed in with the address's own password


@pytest.mark.parametrize("by", ["api", "cli"])
def test_a_suspended_address_ends_its_sessions(nodes: Nodes, by: str) -> None:
    taro, _ = nodes.mailbox(TARO)
    hanako, _ = nodes.mailbox(HANAKO)
    holder, _ = nodes.holder()
    if by == "api":
        response = nodes.b.operator.patch(f"/v1/contracts/{CN}/addresses/{TARO}",
                                          json={"status": "suspended"})
        assert response.status_code == 200, response.text
    else:
        set_address_status_cli(nodes.b.settings, address=TARO, status="suspended")
    assert not alive(taro)
    assert alive(hanako) and alive(holder)
    refused = nodes.browser().post("/v1/session", json={"address": TARO,
                                                         "password": nodes.pop[TARO]})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "address_suspended"


def test_a_suspended_contract_ends_every_session_of_it(nodes: Nodes) -> None:
    sessions = [nodes.holder()[0], nodes.mailbox(TARO)[0], nodes.mailbox(HANAKO)[0]]
    assert nodes.b.operator.patch(f"/v1/contracts/{CN}",
                                  json={"status": "suspended"}).status_code == 200
    assert not any(alive(client) for client in sessions)
    # Mailbox users cannot sign in; the contract holder may, to look (see below).
    mailbox = nodes.browser().post("/v1/session", json={"address": TARO,
                                                         "password": nodes.pop[TARO]})
    assert mailbox.status_code == 403
    assert mailbox.json()["error"]["code"] == "address_suspended"
    looking, _ = nodes.holder()
    rows = looking.get(f"/v1/contracts/{CN}/addresses").json()["addresses"]
    assert {row["status"] for row in rows} == {"suspended"}
    # Resumed: the session signed in while suspended ends too; signing in works again.
    assert nodes.b.operator.patch(f"/v1/contracts/{CN}",
                                  json={"status": "active"}).status_code == 200
    assert not alive(sessions[0]) and not alive(looking)
    assert alive(nodes.holder()[0]) and alive(nodes.mailbox(TARO)[0])


def test_a_suspended_contract_is_changed_by_the_operator_only(nodes: Nodes) -> None:
    """003 Art.16/20, SPEC §9a: a suspended contract's customer key once changed its
    forwarding.  Every write by a customer key, a mailbox key, the portal's key or a
    portal session is 403 now; reading still works; the operator changes what it must."""
    customer = nodes.b.client(nodes.b.create_key("customer", contract=CN))
    mailbox = nodes.b.client(nodes.b.create_key("customer", contract=CN, address=TARO))
    portal = nodes.b.client(nodes.b.create_key("portal"))
    before, before_csrf = nodes.holder()
    assert nodes.b.operator.patch(f"/v1/contracts/{CN}",
                                  json={"status": "suspended"}).status_code == 200
    session, csrf = nodes.holder()  # signed in after the suspension, to look
    session.headers.update(csrf)
    base = f"/v1/contracts/{CN}/addresses/{TARO}"
    writes = [
        ("PUT", f"{base}/forwarding", {"destinations": ["thief@example.org"]}),
        ("PUT", f"{base}/auto-reply", {"enabled": True, "default_message": "x"}),
        ("POST", f"{base}/password/reissue", None),
        ("POST", f"{base}/password", {"current": nodes.pop[TARO], "new": "Brand.new7"}),
        ("PUT", f"{base}/spam", {"judge": True, "quarantine": False, "notify": False}),
        ("DELETE", base, None),
        ("POST", f"/v1/contracts/{CN}/addresses",
         {"local_part": "jiro", "subdomain": "e06", "accept_terms": True}),
    ]
    for client in (customer, mailbox, portal, session):
        for method, url, body in writes:
            response = client.request(method, url, json=body,
                                      headers={"Accept-Language": "ja"})
            if client is mailbox and response.status_code in (403, 404) and \
                    response.json()["error"]["code"] in ("forbidden", "not_found"):
                continue  # outside a mailbox key's scope anyway
            assert response.status_code == 403, (method, url, response.text)
            assert response.json()["error"] == {
                "code": "contract_suspended", "message": SUSPENDED_JA, "field": None}
        assert client.get(f"{base}/forwarding").status_code == 200  # reading is fine
    # The session from before the suspension ended with it.
    assert before.put(f"{base}/forwarding", headers=before_csrf,
                      json={"destinations": []}).status_code == 401
    assert nodes.b.operator.get(f"{base}/forwarding").json()["destinations"] == []
    # The operator still changes it.
    operator = nodes.b.operator.put(f"{base}/forwarding",
                                    json={"destinations": ["kept@example.jp"]})
    assert operator.status_code == 200, operator.text
    assert nodes.b.operator.post(f"{base}/password/reissue").status_code == 200
