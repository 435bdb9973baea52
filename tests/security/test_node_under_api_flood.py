"""A whole node (``mailplane serve``) while its API is flooded (issue 15): 128 clients
with a real key id and garbage secrets plus 64 parallel reads with a good key.  POP3
logins keep working during the flood (the API has its own pool and no argon2 per wrong
key), the API answers no 500, and the node's state is private from its first start."""

from __future__ import annotations

import poplib
import ssl
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.factories.node import Node, NodeFactory


def _argon2_key_checks(node: Node) -> float:
    text = httpx.get(f"{node.api_url}/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "mailplane_api_key_checks_total"
               and sample.labels.get("scheme") == "argon2")


def _pop3_login(node: Node, account: str, password: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    pop = poplib.POP3_SSL("127.0.0.1", node.ports["pop3tls"], context=context, timeout=30)
    try:
        pop.user(account)
        return pop.pass_(password).startswith(b"+OK")
    finally:
        pop.quit()


def test_pop3_logins_work_while_the_api_is_flooded(node_factory: NodeFactory) -> None:
    node = node_factory(MAILPLANE_SECURITY__ARGON2_MEMORY_KIB="19456",
                        MAILPLANE_SECURITY__ARGON2_TIME_COST="2")
    node.start()
    assert stat.S_IMODE(node.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((node.state_dir / "mailplane.db").stat().st_mode) == 0o600
    api = node.api()
    assert api.post("/v1/contracts", json={"customer_number": "C0001",
                                           "contact_email": "c@contact.example.jp"}
                    ).status_code == 201
    created = api.post("/v1/contracts/C0001/addresses",
                       json={"local_part": "taro", "subdomain": "e06", "accept_terms": True})
    assert created.status_code == 201, created.text
    account = created.json()["pop_account"]
    password = created.json()["initial_password"]["password"]
    bogus = f"mpk_{node.operator_key.removeprefix('mpk_').split('_', 1)[0]}_{'x' * 43}"
    argon2_before = _argon2_key_checks(node)
    stop = threading.Event()
    answers: list[int] = []

    def flood(key: str, path: str) -> None:
        with httpx.Client(base_url=node.api_url, timeout=120,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            for _ in range(20):
                if stop.is_set():
                    return
                answers.append(client.get(path).status_code)

    with ThreadPoolExecutor(max_workers=192) as pool:
        futures = [pool.submit(flood, bogus, "/v1/contracts/C0001") for _ in range(128)]
        futures += [pool.submit(flood, node.operator_key, "/v1/contracts/C0001/addresses")
                    for _ in range(64)]
        logins = [_pop3_login(node, account, password) for _ in range(3)]
        answered_during_logins = len(answers)
        stop.set()
        for future in futures:
            future.result()
    assert logins == [True, True, True]
    assert 0 < answered_during_logins < 192 * 20  # the logins ran during the flood
    assert 500 not in answers and set(answers) <= {200, 401, 429, 503}
    assert answers.count(200) > 0 and answers.count(401) > 0
    assert _argon2_key_checks(node) == argon2_before
