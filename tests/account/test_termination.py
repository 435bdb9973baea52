"""解約 (SPEC §9a, issue 22 finding 4; 003 Art.18-20).  A terminated contract: nobody logs
in (POP3, submission, portal, its keys), mail to its addresses is refused 550 5.1.1, the
addresses stay retired for the cool-off, its data is purged after
``account.terminated_data_days`` by the periodic job, every step audited and notified.
The operator may restore it until the purge.  A customer requests it for a month end
(Art.18).  And a suspended contract is changed by the operator alone."""

from __future__ import annotations

import poplib
import smtplib
import ssl
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import httpx
import pytest
from sqlalchemy import select

from mailplane.delivery.retention import purge
from mailplane.storage.models import AuditRecord, OutboundJob, RetiredAddress
from mailplane.storage.policy_loader import load_snapshot
from tests.factories.api import ApiHarness
from tests.factories.node import Node, NodeFactory

TARO = "taro@e06.example.net"
BASE = "/v1/contracts/T0001"


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _pop3_login(node: Node, account: str, password: str) -> None:
    pop = poplib.POP3_SSL("127.0.0.1", node.ports["pop3tls"], context=_tls(), timeout=10)
    try:
        pop.user(account)
        pop.pass_(password)
    finally:
        pop.close()


def _submit(node: Node, account: str, password: str) -> None:
    message = EmailMessage()
    message["From"] = TARO
    message["To"] = "friend@example.org"
    message["Subject"] = "hello"
    message.set_content("hi\n")
    with smtplib.SMTP("127.0.0.1", node.ports["sub"], timeout=10) as smtp:
        smtp.starttls(context=_tls())
        smtp.login(account, password)
        smtp.send_message(message)


def _rcpt(node: Node, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10) as smtp:
        smtp.ehlo("client.example.org")
        smtp.mail("friend@example.org")
        return smtp.rcpt(address)


@pytest.fixture(params=["sqlite", "postgresql"])
def node(request: pytest.FixtureRequest, node_factory: NodeFactory) -> Node:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    started = node_factory(url)
    started.start()
    return started


def test_a_terminated_contract_logs_in_nowhere_and_its_mail_is_refused(node: Node) -> None:
    api = node.api()
    assert api.post("/v1/contracts", json={"customer_number": "T0001",
                                           "contact_email": "t@contact.example.jp"}
                    ).status_code == 201
    contract_password = api.post(f"{BASE}/password").json()["password"]
    created = api.post(f"{BASE}/addresses", json={"local_part": "taro", "subdomain": "e06",
                                                  "accept_terms": True})
    pop_account = created.json()["pop_account"]
    pop_password = created.json()["initial_password"]["password"]
    key = api.post("/v1/api-keys", json={"role": "customer", "contract": "T0001"}
                   ).json()["api_key"]
    portal = httpx.Client(base_url=node.api_url, timeout=30)
    assert portal.post("/v1/session", json={"customer_number": "T0001",
                                            "password": contract_password}).status_code == 200
    node.settle()
    _pop3_login(node, pop_account, pop_password)
    _submit(node, pop_account, pop_password)
    assert _rcpt(node, TARO)[0] == 250

    ended = api.patch(BASE, json={"status": "terminated"})
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "terminated"
    assert ended.json()["termination"]["purge_at"]
    node.settle()

    with pytest.raises(poplib.error_proto):
        _pop3_login(node, pop_account, pop_password)
    with pytest.raises(smtplib.SMTPException):
        _submit(node, pop_account, pop_password)
    code, reply = _rcpt(node, TARO)
    assert (code, reply[:5]) == (550, b"5.1.1")
    assert portal.get(f"{BASE}/addresses").status_code == 401  # the session ended
    again = httpx.post(f"{node.api_url}/v1/session", json={"customer_number": "T0001",
                                                         "password": contract_password},
                       headers={"Accept-Language": "ja"})
    assert again.status_code == 403
    assert again.json()["error"]["code"] == "contract_terminated"
    assert node.api(key).get(BASE).status_code == 401  # its keys are revoked
    # The address stays taken; the contract refuses changes until restored.
    assert api.post("/v1/contracts", json={"customer_number": "T0002",
                                           "contact_email": "u@contact.example.jp"}
                    ).status_code == 201
    taken = api.post("/v1/contracts/T0002/addresses",
                     json={"local_part": "taro", "subdomain": "e06", "accept_terms": True})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "address_taken"
    assert api.patch(BASE, json={"extra_slots": 3}).status_code == 409
    assert api.patch(BASE, json={"status": "terminated"}).status_code == 200  # idempotent

    # Restored by the operator: everything works again (the keys stay revoked).
    restored = api.patch(BASE, json={"status": "active"})
    assert restored.status_code == 200 and restored.json()["termination"] is None
    node.settle()
    _pop3_login(node, pop_account, pop_password)
    assert _rcpt(node, TARO)[0] == 250


def _contract_with_address(api: ApiHarness) -> None:
    api.create_contract("T0001")
    api.create_address("T0001", "taro", "e06")


def _actions(api: ApiHarness) -> list[tuple[str, str]]:
    with api.session_factory() as session:
        return [(row.action, row.actor) for row in session.scalars(
            select(AuditRecord).order_by(AuditRecord.id))]


def test_the_data_is_purged_after_the_period_and_the_addresses_cool_off(
        api: ApiHarness) -> None:
    _contract_with_address(api)
    maildir = api.settings.maildir_root / "e06.example.net" / "taro"
    maildir.mkdir(parents=True)
    (maildir / "kept-until-purge").write_text("mail")
    assert api.operator.patch(BASE, json={"status": "terminated"}).status_code == 200
    terminated_at = api.clock.now()
    days = api.settings.account.terminated_data_days

    api.clock.advance(timedelta(days=days) - timedelta(minutes=1))
    assert purge(api.settings, api.session_factory, api.clock).contracts_purged == 0
    assert maildir.exists()
    api.clock.advance(timedelta(minutes=2))
    assert purge(api.settings, api.session_factory, api.clock).contracts_purged == 1
    assert not maildir.exists()
    assert purge(api.settings, api.session_factory, api.clock).contracts_purged == 0
    with api.session_factory() as session:
        retired = session.get(RetiredAddress, TARO)
        snapshot = load_snapshot(session, ("example.net",))
    assert retired is not None
    assert retired.deleted_at.replace(tzinfo=UTC) == terminated_at
    assert snapshot.lookup(TARO) is None
    contract = api.operator.get(BASE).json()
    assert contract["status"] == "terminated" and contract["quota"]["used"] == 0
    refused = api.operator.patch(BASE, json={"status": "active"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "contract_purged"
    assert ("contract.purge", "system:lifecycle") in _actions(api)

    # Retired for the cool-off counted from the termination, then free again.
    api.create_contract("T0002")
    path = "/v1/contracts/T0002/subdomain-candidates?local_part=taro&page=1"
    offered = [c["subdomain"] for c in api.operator.get(path).json()["candidates"]]
    assert "e06" not in offered
    api.clock.set(terminated_at + timedelta(days=api.settings.addresses.deleted_cooloff_days,
                                            minutes=1))
    api.create_address("T0002", "taro", "e06")


def test_a_customer_requests_termination_for_a_month_end(api: ApiHarness) -> None:
    _contract_with_address(api)
    password = api.operator.post(f"{BASE}/password").json()["password"]
    holder = api.client(api.create_key("customer", contract="T0001"))
    # 2026/11/23 (JST): the end of November is less than 10 days away.
    options = holder.get(f"{BASE}/termination").json()
    assert options["dates"] == ["2026/12/31", "2027/01/31", "2027/02/28"]
    assert options["notice_days"] == 10 and options["termination"] is None

    wrong = holder.post(f"{BASE}/termination", json={"last_day": "2026/12/31",
                                                     "password": "not-the-password"})
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "password"
    early = holder.post(f"{BASE}/termination", json={"last_day": "2026/11/30",
                                                     "password": password})
    assert early.status_code == 422 and early.json()["error"]["field"] == "last_day"
    requested = holder.post(f"{BASE}/termination", json={"last_day": "2026/12/31",
                                                         "password": password})
    assert requested.status_code == 201, requested.text
    assert requested.json()["termination"]["last_day"] == "2026/12/31"
    assert requested.json()["status"] == "active"
    assert holder.delete(f"{BASE}/termination").status_code == 204
    assert holder.get(BASE).json()["termination"] is None
    assert holder.post(f"{BASE}/termination", json={"last_day": "2027/01/31",
                                                    "password": password}).status_code == 201

    # The last day is a normal day; the next day (JST) the periodic job ends it.
    api.clock.set(datetime(2027, 1, 31, 14, 59, tzinfo=UTC))  # 23:59 JST
    assert purge(api.settings, api.session_factory, api.clock).contracts_terminated == 0
    api.clock.set(datetime(2027, 1, 31, 15, 0, tzinfo=UTC))  # 2027/02/01 00:00 JST
    assert purge(api.settings, api.session_factory, api.clock).contracts_terminated == 1
    assert api.operator.get(BASE).json()["status"] == "terminated"
    assert holder.get(BASE).status_code == 401  # its key died with it
    actions = _actions(api)
    assert ("contract.terminate", "system:lifecycle") in actions
    with api.session_factory() as session:
        notices = session.scalars(select(OutboundJob).where(OutboundJob.kind == "notice")
                                  ).all()
    texts = [job.message.decode("ascii") for job in notices if job.message]
    assert len(texts) >= 4  # request, withdrawal, request, termination


def test_a_suspended_contract_is_changed_by_the_operator_alone(api: ApiHarness) -> None:
    _contract_with_address(api)
    holder = api.client(api.create_key("customer", contract="T0001"))
    portal = api.client(api.create_key("portal"))
    assert api.operator.patch(BASE, json={"status": "suspended"}).status_code == 200
    forwarding = {"destinations": ["friend@example.jp"], "keep_copy": True}
    for client in (holder, portal):
        refused = client.put(f"{BASE}/addresses/{TARO}/forwarding", json=forwarding)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "contract_suspended"
        assert client.post(f"{BASE}/addresses/{TARO}/password/reissue").status_code == 403
        assert client.get(f"{BASE}/addresses/{TARO}/forwarding").status_code == 200
    assert api.operator.put(f"{BASE}/addresses/{TARO}/forwarding",
                            json=forwarding).status_code == 200
