"""The MTA-STS policy (RFC 8461 §3.2) the API serves at
``https://mta-sts.<domain>/.well-known/mta-sts.txt``, over a real socket, and the
``_mta-sts`` id that changes with it."""

from __future__ import annotations

import httpx
import pytest

from mailplane.net.mta_sts import policy_id
from tests.factories.api import ApiFactory

PUBLIC = {"mx_hosts": ["mx1.example.net", "mx2.example.net"]}


def _get(base_url: str, host: str) -> httpx.Response:
    return httpx.get(f"{base_url}/.well-known/mta-sts.txt", headers={"Host": host},
                     timeout=10, follow_redirects=False)


def test_the_policy_lists_mode_mx_hosts_and_max_age_as_rfc_8461_says(
        api_factory: ApiFactory) -> None:
    api = api_factory(public=PUBLIC, mta_sts={"mode": "enforce", "max_age_seconds": 1209600})
    answer = _get(api.base_url, "mta-sts.example.net")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.content == (b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.net\r\n"
                              b"mx: mx2.example.net\r\nmax_age: 1209600\r\n")
    # Every base domain (and a customer subdomain) has it; the port is not part of it.
    for host in ("mta-sts.example.org", "MTA-STS.example.net:443", "mta-sts.e06.example.net"):
        assert _get(api.base_url, host).content == answer.content, host


@pytest.mark.parametrize("host", ["example.net", "mta-sts.evil.test", "www.example.net",
                                  "mta-sts.example.net.evil.test", "mta-sts.", "[::1]:8080",
                                  "mta-sts.notexample.net"])
def test_a_host_that_is_not_mta_sts_of_ours_gets_404(api_factory: ApiFactory,
                                                     host: str) -> None:
    api = api_factory(public=PUBLIC)
    answer = _get(api.base_url, host)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_testing_is_the_default_and_the_id_changes_exactly_when_the_policy_does(
        api_factory: ApiFactory) -> None:
    api = api_factory(public=PUBLIC)
    assert b"mode: testing\r\n" in _get(api.base_url, "mta-sts.example.net").content
    assert b"max_age: 604800\r\n" in _get(api.base_url, "mta-sts.example.net").content
    same = api.settings.model_copy(update={"timezone": "UTC"})
    assert policy_id(same) == policy_id(api.settings)
    for update in ({"mta_sts": api.settings.mta_sts.model_copy(update={"mode": "enforce"})},
                   {"public": api.settings.public.model_copy(
                       update={"mx_hosts": ["mx1.example.net"]})}):
        changed = api.settings.model_copy(update=update)
        assert policy_id(changed) != policy_id(api.settings)
        assert policy_id(changed).isalnum() and len(policy_id(changed)) <= 32
