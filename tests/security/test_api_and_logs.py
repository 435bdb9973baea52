"""A customer key reaches only its own contract — every operation of the OpenAPI document
is tried against the other contract — and no password or key ever reaches the log
(issue 7; SPEC §10-§11; non-negotiable "never put secrets in logs")."""

from __future__ import annotations

import contextlib
import poplib
import re
import smtplib
import ssl
from typing import Any

from tests.factories.security import SecureNode

#: Operations any key may call that are not about one contract.
UNSCOPED_OK = {("get", "/healthz"), ("get", "/metrics"), ("get", "/v1/me"),
               # The portal's sign-in calls and the published rules and mail client
               # discovery: public by design, they name no contract.
               ("get", "/v1/session"), ("post", "/v1/session"), ("delete", "/v1/session"),
               ("get", "/v1/rules"), ("get", "/.well-known/autoconfig/mail/config-v1.1.xml"),
               ("post", "/autodiscover/autodiscover.xml"),
               # Recovery of a forgotten contract password starts signed out (issue 22):
               # it names a customer number, never reveals whether it exists.
               ("post", "/v1/recovery"), ("post", "/v1/recovery/verify")}


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "1"), path)


def test_customer_key_gets_404_or_403_on_every_operation_of_another_contract(
    secure_node: SecureNode,
) -> None:
    node = secure_node.node
    mine, other = secure_node.tenants["C1"], secure_node.tenants["C2"]
    spec: dict[str, Any] = node.api().get("/openapi.json").json()
    # Real values of the OTHER contract, including a real quarantine item id if any.
    values = {"cn": other.contract, "address": other.address, "item_id": "20240101-deadbeef"}
    client = node.api(mine.key)
    tried = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            if (method, path) in UNSCOPED_OK:
                continue
            url = _fill(path, values)
            response = client.request(method.upper(), url, json={} if method in
                                      ("post", "put", "patch") else None)
            tried += 1
            assert not 200 <= response.status_code < 300, (method, url, response.text)
            assert response.status_code in (403, 404), (method, url, response.status_code,
                                                        response.text)
    assert tried >= 20  # the document really was enumerated
    # The same key still works on its own contract (the test is not vacuous).
    assert client.get(f"/v1/contracts/{mine.contract}").status_code == 200


def test_no_generated_password_or_key_appears_in_the_log(secure_node: SecureNode) -> None:
    node = secure_node.node
    api = node.api()
    mine = secure_node.tenants["C1"]
    secrets = list(secure_node.secrets)
    created = api.post(f"/v1/contracts/{mine.contract}/addresses",
                       json={"local_part": "logs", "subdomain": "s01", "accept_terms": True})
    assert created.status_code == 201, created.text
    body = created.json()
    secrets.append(body["initial_password"]["password"])
    reissued = api.post(f"/v1/contracts/{mine.contract}/addresses/{mine.address}"
                        "/password/reissue")
    assert reissued.status_code == 200, reissued.text
    new_password = reissued.json()["password"]["password"] if isinstance(
        reissued.json().get("password"), dict) else reissued.json().get("password", "")
    secrets.append(str(new_password))
    key = api.post("/v1/api-keys", json={"role": "customer", "contract": mine.contract})
    secrets.append(key.json()["api_key"])
    assert node.api(key.json()["api_key"]).get("/v1/me").status_code == 200
    assert node.api("mpk_bogus_" + "x" * 32).get("/v1/me").status_code == 401
    # Logins: success and failure, POP3 and submission.
    pop = poplib.POP3_SSL("127.0.0.1", node.ports["pop3tls"], context=_tls(), timeout=10)
    pop.user(body["pop_account"])
    pop.pass_(body["initial_password"]["password"])
    pop.quit()
    wrong = "Wrong-" + body["initial_password"]["password"][::-1]
    secrets.append(wrong)
    pop = poplib.POP3_SSL("127.0.0.1", node.ports["pop3tls"], context=_tls(), timeout=10)
    pop.user(body["pop_account"])
    with contextlib.suppress(poplib.error_proto):
        pop.pass_(wrong)
    pop.close()
    with smtplib.SMTP_SSL("127.0.0.1", node.ports["subtls"], context=_tls(),
                          timeout=10) as smtp, contextlib.suppress(smtplib.SMTPException):
        smtp.login(body["pop_account"], wrong)
    log = node.log_text()
    assert log  # DEBUG logging was on and captured
    for secret in secrets:
        assert secret and secret not in log, "a secret appeared in the log"
        # Key halves too: the random part after the key id.
        tail = secret.rsplit("_", 1)[-1]
        if len(tail) >= 16:
            assert tail not in log
