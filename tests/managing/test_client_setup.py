"""Mail client setup (issue 16): the setup data, Thunderbird autoconfig, Outlook
Autodiscover (POX) and the Apple profile parse and carry the configured public host names
and ports — not the bind addresses."""

from __future__ import annotations

import plistlib
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from tests.factories.api import ApiFactory, ApiHarness

ADDRESS = "taro@e06.example.net"
PUBLIC = {"pop3_host": "pop.example.net", "pop3_port": 110, "pop3_tls_port": 995,
          "smtp_host": "smtp.example.net", "submission_port": 587,
          "submission_tls_port": 465, "provider_name": "Example光"}


@pytest.fixture
def box(api_factory: ApiFactory) -> tuple[ApiHarness, dict[str, Any]]:
    api = api_factory(public=PUBLIC, pop3={"port": 0, "tls_port": 0})
    api.create_contract("C0001")
    created = api.create_address("C0001")
    return api, created


def test_setup_data_names_the_pop_account_and_the_public_servers(box: Any) -> None:
    api, created = box
    response = api.operator.get(f"/v1/contracts/C0001/addresses/{ADDRESS}/client-setup")
    assert response.status_code == 200
    data = response.json()
    assert data["username"] == created["pop_account"]
    assert {(s["protocol"], s["host"], s["port"], s["security"]) for s in data["servers"]} == {
        ("POP3", "pop.example.net", 995, "SSL"), ("POP3", "pop.example.net", 110, "STARTTLS"),
        ("SMTP", "smtp.example.net", 465, "SSL"), ("SMTP", "smtp.example.net", 587, "STARTTLS")}


def test_thunderbird_autoconfig_parses_with_the_public_hosts(box: Any) -> None:
    api, _ = box
    response = api.client().get("/.well-known/autoconfig/mail/config-v1.1.xml",
                                params={"emailaddress": ADDRESS})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.findtext("domain") == "e06.example.net"
    servers = [(s.tag, s.get("type"), s.findtext("hostname"), s.findtext("port"),
                s.findtext("socketType"), s.findtext("username"))
               for s in provider if s.tag.endswith("Server")]
    assert servers == [
        ("incomingServer", "pop3", "pop.example.net", "995", "SSL", "%EMAILADDRESS%"),
        ("incomingServer", "pop3", "pop.example.net", "110", "STARTTLS", "%EMAILADDRESS%"),
        ("outgoingServer", "smtp", "smtp.example.net", "465", "SSL", "%EMAILADDRESS%"),
        ("outgoingServer", "smtp", "smtp.example.net", "587", "STARTTLS", "%EMAILADDRESS%"),
    ]
    other = api.client().get("/.well-known/autoconfig/mail/config-v1.1.xml",
                             params={"emailaddress": "someone@gmail.com"})
    assert other.status_code == 404
    # Unknown addresses of our domains get the same answer: nothing is revealed.
    unknown = api.client().get("/.well-known/autoconfig/mail/config-v1.1.xml",
                               params={"emailaddress": "nobody@a01.example.net"})
    assert unknown.status_code == 200


AUTODISCOVER_REQUEST = b"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>%s</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""
NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


def test_outlook_autodiscover_pox_parses_with_the_public_hosts(box: Any) -> None:
    api, _ = box
    response = api.client().post("/autodiscover/autodiscover.xml",
                                 content=AUTODISCOVER_REQUEST % ADDRESS.encode(),
                                 headers={"Content-Type": "text/xml"})
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    assert root.tag.endswith("}Autodiscover")
    protocols = {p.findtext(f"{NS}Type"): p for p in root.iter(f"{NS}Protocol")}
    assert set(protocols) == {"POP3", "SMTP"}
    pop, smtp = protocols["POP3"], protocols["SMTP"]
    assert (pop.findtext(f"{NS}Server"), pop.findtext(f"{NS}Port"),
            pop.findtext(f"{NS}SSL"), pop.findtext(f"{NS}LoginName")) == (
        "pop.example.net", "995", "on", ADDRESS)
    assert (smtp.findtext(f"{NS}Server"), smtp.findtext(f"{NS}Port")) == (
        "smtp.example.net", "465")
    same = api.client().post("/Autodiscover/Autodiscover.xml",
                             content=AUTODISCOVER_REQUEST % ADDRESS.encode())
    assert same.status_code == 200


@pytest.mark.parametrize("body", [
    b"not xml",
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
    b"<Autodiscover><Request/></Autodiscover>",
    b"<a>" + b"x" * 20000 + b"</a>",
])
def test_bad_autodiscover_requests_get_a_clear_4xx(box: Any, body: bytes) -> None:
    api, _ = box
    response = api.client().post("/autodiscover/autodiscover.xml", content=body)
    assert response.status_code in (400, 413)
    assert response.json()["error"]["code"] in ("bad_request", "too_large")


def test_apple_profile_is_a_plist_with_the_public_hosts_and_no_password(box: Any) -> None:
    api, created = box
    response = api.operator.get(
        f"/v1/contracts/C0001/addresses/{ADDRESS}/client-setup.mobileconfig")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-apple-aspen-config"
    assert "attachment" in response.headers["content-disposition"]
    profile = plistlib.loads(response.content)
    assert profile["PayloadType"] == "Configuration"
    (account,) = profile["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert account["EmailAccountType"] == "EmailTypePOP"
    assert account["EmailAddress"] == ADDRESS
    assert (account["IncomingMailServerHostName"], account["IncomingMailServerPortNumber"],
            account["IncomingMailServerUseSSL"]) == ("pop.example.net", 995, True)
    assert (account["OutgoingMailServerHostName"], account["OutgoingMailServerPortNumber"],
            account["OutgoingMailServerUseSSL"]) == ("smtp.example.net", 465, True)
    assert account["IncomingMailServerUsername"] == created["pop_account"]
    assert created["initial_password"]["password"].encode() not in response.content
    again = api.operator.get(
        f"/v1/contracts/C0001/addresses/{ADDRESS}/client-setup.mobileconfig")
    assert again.content == response.content  # the same profile, replaced, not added


def test_public_host_names_are_checked_at_start_up() -> None:
    from mailplane.config.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match=r"public\.smtp_host"):
        load_settings(public={"smtp_host": "smtp example"})


IMAP = {**PUBLIC, "imap_host": "imap.example.net", "imap_port": 143, "imap_tls_port": 993}


@pytest.fixture
def imap_box(api_factory: ApiFactory) -> tuple[ApiHarness, dict[str, Any]]:
    """A deployment that offers IMAP (どこでもメール, SPEC §9b)."""
    api = api_factory(public=IMAP, pop3={"port": 0, "tls_port": 0})
    api.create_contract("C0001")
    return api, api.create_address("C0001")


def test_imap_is_offered_first_and_recommended_with_pop3_after_it(imap_box: Any) -> None:
    api, created = imap_box
    data = api.operator.get(f"/v1/contracts/C0001/addresses/{ADDRESS}/client-setup").json()
    assert [(s["protocol"], s["port"], s["security"], s["recommended"])
            for s in data["servers"]] == [
        ("IMAP", 993, "SSL", True), ("IMAP", 143, "STARTTLS", True),
        ("POP3", 995, "SSL", False), ("POP3", 110, "STARTTLS", False),
        ("SMTP", 465, "SSL", False), ("SMTP", 587, "STARTTLS", False)]

    autoconfig = ET.fromstring(api.client().get(
        "/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": ADDRESS}
    ).content)
    provider = autoconfig.find("emailProvider")
    assert provider is not None
    incoming = [(s.get("type"), s.findtext("hostname"), s.findtext("port"))
                for s in provider.findall("incomingServer")]
    assert incoming == [("imap", "imap.example.net", "993"), ("imap", "imap.example.net", "143"),
                        ("pop3", "pop.example.net", "995"), ("pop3", "pop.example.net", "110")]

    discovered = ET.fromstring(api.client().post(
        "/autodiscover/autodiscover.xml", content=AUTODISCOVER_REQUEST % ADDRESS.encode()
    ).content)
    assert [p.findtext(f"{NS}Type") for p in discovered.iter(f"{NS}Protocol")] == [
        "IMAP", "POP3", "SMTP"]

    profile = plistlib.loads(api.operator.get(
        f"/v1/contracts/C0001/addresses/{ADDRESS}/client-setup.mobileconfig").content)
    (account,) = profile["PayloadContent"]
    assert account["EmailAccountType"] == "EmailTypeIMAP"
    assert (account["IncomingMailServerHostName"], account["IncomingMailServerPortNumber"],
            account["IncomingMailServerUseSSL"]) == ("imap.example.net", 993, True)
    assert (account["OutgoingMailServerHostName"], account["OutgoingMailServerPortNumber"]) == (
        "smtp.example.net", 465)
    assert account["IncomingMailServerUsername"] == created["pop_account"]


def test_rules_publish_the_webmail_address_only_when_it_is_offered(
        api_factory: ApiFactory) -> None:
    offered = api_factory(webmail={"enabled": True, "public_url": "https://webmail.example.net/"})
    assert offered.client().get("/v1/rules").json()["webmail_url"] == (
        "https://webmail.example.net/")
    assert api_factory().client().get("/v1/rules").json()["webmail_url"] == ""
