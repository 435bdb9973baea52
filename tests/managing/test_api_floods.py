"""Floods and resource exhaustion without credentials (issue 15; SPEC §8a): wrong keys cost
a digest, not argon2; bodies over the limit or without credentials are refused before they
are read; one IP, one key or a burst gets a clear 429/503 with ``Retry-After`` while
everyone else is served."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.factories.api import ApiFactory, ApiHarness
from tests.factories.attack import client_from, metric

CHECKS = "mailplane_api_key_checks_total"
REFUSALS = "mailplane_api_refusals_total"
ADDRESSES = "/v1/contracts/C0001/addresses"


def _key_id(key: str) -> str:
    return key.removeprefix("mpk_").split("_", 1)[0]


def test_a_flood_of_wrong_secrets_costs_no_argon2_and_never_stalls_a_customer(
        api: ApiHarness) -> None:
    api.create_contract("C0001")
    customer_key = api.create_key("customer", contract="C0001")
    bogus = f"mpk_{_key_id(api.operator_key)}_" + "x" * 43
    argon2_before = metric(api, CHECKS, scheme="argon2")
    rejected_before = metric(api, CHECKS, scheme="digest", outcome="rejected")
    stop = threading.Event()
    answers: list[int] = []
    rounds = 50

    def attacker() -> None:
        with httpx.Client(base_url=api.base_url, timeout=120,
                          headers={"Authorization": f"Bearer {bogus}"}) as client:
            for _ in range(rounds):
                if stop.is_set():
                    return
                answers.append(client.get("/v1/contracts/C0001").status_code)

    with ThreadPoolExecutor(max_workers=128) as pool:
        futures = [pool.submit(attacker) for _ in range(128)]
        # A customer on another address, during the flood.
        with client_from(api, "127.0.0.2", customer_key) as customer:
            served = [customer.get("/v1/contracts/C0001").status_code for _ in range(5)]
        answered_when_served = len(answers)
        stop.set()
        for future in futures:
            future.result()
    assert served == [200] * 5
    assert 0 < answered_when_served < 128 * rounds  # served while the flood still ran
    assert set(answers) <= {401, 429, 503} and answers.count(401) > 0
    assert metric(api, CHECKS, scheme="argon2") == argon2_before
    assert (metric(api, CHECKS, scheme="digest", outcome="rejected") - rejected_before
            == answers.count(401))


def test_an_unknown_key_id_and_a_wrong_secret_cost_the_same(api: ApiHarness) -> None:
    """Both are one lookup and one digest comparison: the same counted work, so neither
    timing nor work tells an attacker which key ids exist."""
    known = f"mpk_{_key_id(api.operator_key)}_" + "y" * 43
    unknown = "mpk_000000000000_" + "y" * 43
    for token in (known, unknown):
        before = metric(api, CHECKS, scheme="digest", outcome="rejected")
        argon2 = metric(api, CHECKS, scheme="argon2")
        assert api.client(token).get("/v1/me").status_code == 401
        assert metric(api, CHECKS, scheme="digest", outcome="rejected") == before + 1
        assert metric(api, CHECKS, scheme="argon2") == argon2


def _raw_request(api: ApiHarness, head: str, body: bytes = b"",
                 source: str = "127.0.0.1") -> socket.socket:
    host, port = api.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20,
                                    source_address=(source, 0))
    sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return sock


def _status_of(sock: socket.socket) -> int:
    """The status of the response on ``sock`` (it must come without our sending more)."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    return int(data.split(b" ", 2)[1])


def test_a_huge_body_without_credentials_is_refused_before_it_is_read(
        api: ApiHarness) -> None:
    api.create_contract("C0001")
    before = metric(api, REFUSALS, reason="body_without_credentials")
    sock = _raw_request(api, f"POST {ADDRESSES} HTTP/1.1\nHost: x\n"
                             "Content-Type: application/json\n"
                             "Content-Length: 300000000\n")
    assert _status_of(sock) == 401  # answered with none of the 300 MB sent
    assert metric(api, REFUSALS, reason="body_without_credentials") == before + 1


def test_a_body_over_the_limit_is_refused_before_it_is_read(api: ApiHarness) -> None:
    api.create_contract("C0001")
    before = metric(api, REFUSALS, reason="body_too_large")
    sock = _raw_request(api, f"POST {ADDRESSES} HTTP/1.1\nHost: x\n"
                             f"Authorization: Bearer {api.operator_key}\n"
                             "Content-Type: application/json\n"
                             "Content-Length: 300000000\n")
    assert _status_of(sock) == 413
    assert metric(api, REFUSALS, reason="body_too_large") == before + 1


def test_a_streamed_body_is_cut_off_at_the_limit(api: ApiHarness) -> None:
    """Chunked: no length to check up front, so the bytes are counted as they arrive."""
    api.create_contract("C0001")
    limit = api.settings.api.max_body_bytes
    before = metric(api, REFUSALS, reason="body_too_large")
    chunk = b"[" * 65536

    def body() -> Iterator[bytes]:
        for _ in range(4 * limit // len(chunk)):
            yield chunk

    try:
        with httpx.Client(base_url=api.base_url, timeout=60) as client:
            response = client.post(ADDRESSES, content=body(),
                                   headers={"Authorization": f"Bearer {api.operator_key}",
                                            "Content-Type": "application/json"})
        assert response.status_code == 413, response.text
    except httpx.TransportError:
        pass  # the server closed the connection on the rest of the body
    assert metric(api, REFUSALS, reason="body_too_large") == before + 1


def test_deeply_nested_json_is_a_clear_4xx(api: ApiHarness) -> None:
    api.create_contract("C0001")
    for body in ("[" * 200_000, '{"a":' * 100_000, '{"local_part": ' + "[" * 50_000):
        response = api.operator.post(ADDRESSES, content=body,
                                     headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, response.text


def test_unauthenticated_requests_per_ip_are_bounded(api_factory: ApiFactory) -> None:
    """Requests whose key is not verified yet (here: bodies trickling in) count against
    their IP; past the limit that IP gets 429 while other addresses are served, and the
    count goes back down when they finish."""
    api = api_factory(api={"max_unauthenticated_per_ip": 3})
    api.create_contract("C0001")
    held = [_raw_request(api, f"POST {ADDRESSES} HTTP/1.1\nHost: x\n"
                              "Authorization: Bearer mpk_000000000000_bogus\n"
                              "Content-Type: application/json\nContent-Length: 10\n", b"{")
            for _ in range(3)]
    with httpx.Client(base_url=api.base_url, timeout=30) as same_ip:
        refused = _eventually(lambda: same_ip.get("/v1/me").status_code == 429)
        response = same_ip.get("/v1/me")
    assert refused and response.headers["Retry-After"]
    with client_from(api, "127.0.0.2", api.operator_key) as elsewhere:
        assert elsewhere.get("/v1/me").status_code == 200
    for sock in held:
        sock.sendall(b'"a": 123}')
        assert _status_of(sock) == 401
    with httpx.Client(base_url=api.base_url, timeout=30) as same_ip:
        assert _eventually(lambda: same_ip.get("/v1/me").status_code == 401)


def _eventually(condition: object, attempts: int = 600) -> bool:
    """Poll ``condition`` (the server registers a held request asynchronously)."""
    assert callable(condition)
    for _ in range(attempts):
        if condition():
            return True
        time.sleep(0.05)
    return False


@contextmanager
def _database_write_locked(api: ApiHarness) -> Iterator[None]:
    """Another writer holds SQLite's write lock: API writes wait in their route, each
    holding its database turn and its key's slot, until we let go."""
    path = Path(api.settings.database_url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(path, isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("COMMIT")
        holder.close()


def _put_virus_check(api: ApiHarness, key: str) -> int:
    with httpx.Client(base_url=api.base_url, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as client:
        return client.put(f"{ADDRESSES}/taro@e06.example.net/virus-check",
                          json={"enabled": False}).status_code


def test_concurrent_requests_per_customer_key_are_bounded(api_factory: ApiFactory) -> None:
    api = api_factory(api={"max_concurrent_per_key": 1})
    api.create_contract("C0001")
    api.create_address("C0001")
    busy_key = api.create_key("customer", contract="C0001")
    other_key = api.create_key("customer", contract="C0001")
    before = metric(api, REFUSALS, reason="per_key")
    with ThreadPoolExecutor(max_workers=1) as pool:
        with _database_write_locked(api):
            waiting = pool.submit(_put_virus_check, api, busy_key)
            with httpx.Client(base_url=api.base_url, timeout=30,
                              headers={"Authorization": f"Bearer {busy_key}"}) as busy:
                assert _eventually(lambda: busy.get(ADDRESSES).status_code == 429)
                refused = busy.get(ADDRESSES)
            assert refused.status_code == 429 and refused.headers["Retry-After"]
            assert api.client(other_key).get(ADDRESSES).status_code == 200
            assert not waiting.done()
        assert waiting.result() == 200
    assert metric(api, REFUSALS, reason="per_key") > before
    assert api.client(busy_key).get(ADDRESSES).status_code == 200


def test_a_burst_waits_for_a_turn_then_gets_503_with_retry_after(
        api_factory: ApiFactory) -> None:
    api = api_factory(api={"max_concurrent_requests": 2, "queue_timeout_seconds": 0.5})
    api.create_contract("C0001")
    api.create_address("C0001")
    with ThreadPoolExecutor(max_workers=2) as pool:
        with _database_write_locked(api):
            held = [pool.submit(_put_virus_check, api, api.operator_key) for _ in range(2)]
            assert _eventually(
                lambda: metric(api, "mailplane_api_requests_active") == 2)
            refused = api.operator.get(ADDRESSES)
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"]
            assert refused.json()["error"]["code"] == "busy"
        assert [future.result() for future in held] == [200, 200]
    assert api.operator.get(ADDRESSES).status_code == 200


def test_a_queued_request_is_served_when_a_turn_frees(api_factory: ApiFactory) -> None:
    api = api_factory(api={"max_concurrent_requests": 1, "queue_timeout_seconds": 60})
    api.create_contract("C0001")
    api.create_address("C0001")
    with ThreadPoolExecutor(max_workers=2) as pool:
        with _database_write_locked(api):
            held = pool.submit(_put_virus_check, api, api.operator_key)
            assert _eventually(lambda: metric(api, "mailplane_api_requests_active") == 1)
            queued = pool.submit(lambda: api.client(api.operator_key).get(ADDRESSES))
            assert _eventually(lambda: metric(api, "mailplane_api_requests_waiting") == 1)
            assert not queued.done()
        assert held.result() == 200
        response = queued.result()
    assert response.status_code == 200
    assert json.loads(response.text)["addresses"][0]["virus_check"] is False


def test_a_flood_at_a_pre_0005_key_is_capped_and_never_a_500(api_factory: ApiFactory) -> None:
    """Such a key still costs argon2 per wrong secret until its first good use; at most
    ``max_concurrent_hashing`` run at once, the rest wait briefly and get 503."""
    from datetime import UTC, datetime

    from mailplane.auth.api_keys import new_key_material
    from mailplane.auth.passwords import PasswordHashing
    from mailplane.storage import api_keys_repo
    from tests.factories.attack import PRODUCTION_ARGON2, assert_no_server_error, at_once

    api = api_factory(security=PRODUCTION_ARGON2,
                      api={"max_concurrent_hashing": 1, "queue_timeout_seconds": 0.2})
    key_id, secret, key = new_key_material()
    with api.session_factory() as session:
        api_keys_repo.create_api_key(
            session, key_id=key_id, role="operator", now=datetime.now(UTC),
            secret_hash=PasswordHashing(api.settings.security).hash(secret))
        session.commit()
    before = metric(api, CHECKS, scheme="argon2", outcome="rejected")
    responses = at_once(api, f"mpk_{key_id}_{'z' * 43}",
                        [lambda c: c.get("/v1/me")] * 32)
    assert_no_server_error(responses)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {401, 503}
    assert metric(api, CHECKS, scheme="argon2", outcome="rejected") - before == \
        statuses.count(401)
    assert api.client(key).get("/v1/me").status_code == 200
