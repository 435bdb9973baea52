"""Mail client settings (issue 16): what a customer types into a mail program, and the three
automatic formats — Thunderbird autoconfig (clientConfig 1.1), Microsoft Autodiscover (POX)
and an Apple configuration profile — all built from ``[public]`` (the names and ports the
world reaches, not the bind addresses).

IMAP comes first where it is offered (``[public] imap_host``; どこでもメール, SPEC §9b):
mail stays on the server, so a phone, a PC and the webmail see the same mail and the same
迷惑メール folder — the recommended choice; POP3 follows.  Implicit TLS (RFC 8314) comes
before STARTTLS for each.  Passwords never appear in any of them.
"""

from __future__ import annotations

import plistlib
import uuid
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from mailplane.config.settings import Settings


@dataclass(frozen=True, slots=True)
class Endpoint:
    protocol: str  # "IMAP", "POP3" or "SMTP"
    host: str
    port: int
    security: str  # "SSL" (implicit TLS) or "STARTTLS"
    #: The incoming protocol to choose: IMAP where it is offered, else POP3.
    recommended: bool = False


def provider(settings: Settings) -> str:
    return settings.public.provider_name or settings.base_domains[0]


def endpoints(settings: Settings) -> list[Endpoint]:
    """Incoming first (IMAP, then POP3), then outgoing; implicit TLS first in each."""
    public = settings.public
    imap = bool(public.imap_host)
    offered = [
        Endpoint("IMAP", public.imap_host, public.imap_tls_port, "SSL", True),
        Endpoint("IMAP", public.imap_host, public.imap_port, "STARTTLS", True),
    ] if imap else []
    return [
        *offered,
        Endpoint("POP3", public.pop3_host, public.pop3_tls_port, "SSL", not imap),
        Endpoint("POP3", public.pop3_host, public.pop3_port, "STARTTLS", not imap),
        Endpoint("SMTP", public.smtp_host, public.submission_tls_port, "SSL"),
        Endpoint("SMTP", public.smtp_host, public.submission_port, "STARTTLS"),
    ]


def _first(settings: Settings, *, incoming: bool) -> Endpoint:
    """The implicit-TLS endpoint to put into a profile: the recommended incoming one, or
    submission."""
    return next(e for e in endpoints(settings) if e.security == "SSL" and (
        e.recommended if incoming else e.protocol == "SMTP"))


def hosted_domain(address: str, settings: Settings) -> str | None:
    """The address's domain when it is ``<subdomain>.<base domain>`` of ours, else None."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at or not local or len(address) > 320:
        return None
    for base in settings.base_domains:
        sub, dot, rest = domain.partition(".")
        if dot and rest == base and sub.isascii() and sub.isalnum():
            return domain
    return None


def _sub(parent: ET.Element, tag: str, text: str | int | None = None,
         **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = str(text)
    return node


def autoconfig_xml(settings: Settings, domain: str) -> bytes:
    """Thunderbird's clientConfig v1.1 (the first incoming server is the one it offers);
    the user name is the address (IMAP, POP3 and submission accept it as well as the POP
    account, and it reveals nothing)."""
    root = ET.Element("clientConfig", version="1.1")
    provider_node = _sub(root, "emailProvider", id=provider(settings))
    _sub(provider_node, "domain", domain)
    _sub(provider_node, "displayName", provider(settings))
    _sub(provider_node, "displayShortName", provider(settings))
    for endpoint in endpoints(settings):
        tag = "outgoingServer" if endpoint.protocol == "SMTP" else "incomingServer"
        server = _sub(provider_node, tag, type=endpoint.protocol.lower())
        _sub(server, "hostname", endpoint.host)
        _sub(server, "port", endpoint.port)
        _sub(server, "socketType", endpoint.security)
        _sub(server, "username", "%EMAILADDRESS%")
        _sub(server, "authentication", "password-cleartext")
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


AUTODISCOVER_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
#: Longest Autodiscover request read; the real ones are a few hundred bytes.
MAX_AUTODISCOVER_BYTES = 8192


class AutodiscoverRequestError(ValueError):
    pass


def autodiscover_address(body: bytes) -> str:
    """The ``EMailAddress`` of an Autodiscover POX request.  DTDs are refused before
    parsing (no entity expansion), and the size is bounded by the caller."""
    if len(body) > MAX_AUTODISCOVER_BYTES:
        raise AutodiscoverRequestError("request too large")
    if b"<!" in body:
        raise AutodiscoverRequestError("DTDs are not accepted")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise AutodiscoverRequestError("not XML") from exc
    node = root.find(".//{*}EMailAddress")
    if node is None or not (node.text or "").strip():
        node = root.find(".//EMailAddress")
    if node is None or not (node.text or "").strip():
        raise AutodiscoverRequestError("no EMailAddress")
    return (node.text or "").strip()


def autodiscover_xml(settings: Settings, address: str) -> bytes:
    ET.register_namespace("", AUTODISCOVER_RESPONSE_NS)
    root = ET.Element(f"{{{AUTODISCOVER_RESPONSE_NS}}}Autodiscover")
    response = ET.SubElement(root, f"{{{OUTLOOK_NS}}}Response")
    account = ET.SubElement(response, f"{{{OUTLOOK_NS}}}Account")

    def sub(parent: ET.Element, tag: str, text: str | int) -> None:
        ET.SubElement(parent, f"{{{OUTLOOK_NS}}}{tag}").text = str(text)

    sub(account, "AccountType", "email")
    sub(account, "Action", "settings")
    for endpoint in endpoints(settings):
        if endpoint.security != "SSL":
            continue  # one entry per protocol: implicit TLS
        protocol = ET.SubElement(account, f"{{{OUTLOOK_NS}}}Protocol")
        sub(protocol, "Type", endpoint.protocol)
        sub(protocol, "Server", endpoint.host)
        sub(protocol, "Port", endpoint.port)
        sub(protocol, "LoginName", address)
        sub(protocol, "DomainRequired", "off")
        sub(protocol, "SPA", "off")
        sub(protocol, "SSL", "on")
        sub(protocol, "AuthRequired", "on")
        if endpoint.protocol == "SMTP":
            sub(protocol, "UsePOPAuth", "on")
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def mobileconfig(settings: Settings, *, address: str, username: str) -> bytes:
    """An Apple configuration profile with one mail account — IMAP where it is offered,
    else POP — (no password: the device asks for it).  UUIDs are derived from the address,
    so downloading twice replaces the same profile instead of adding a second one."""
    incoming = _first(settings, incoming=True)
    outgoing = _first(settings, incoming=False)
    name = provider(settings)
    identifier = ".".join(reversed(name.split("."))) + ".mailplane"
    account = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.mail.{address}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mail:{address}")).upper(),
        "PayloadDisplayName": address,
        "EmailAccountDescription": f"{name} ({address})",
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "IMAP" else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": username,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": username,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.profile.{address}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"profile:{address}")).upper(),
        "PayloadDisplayName": f"{name} {address}",
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile)
