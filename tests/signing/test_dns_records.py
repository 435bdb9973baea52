"""``mailplane dns-records`` (SPEC §8b): what an operator publishes for each base domain —
MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and the client-setup records — in zone-file
syntax that dnspython's zone parser reads back, from ``[public]`` and the selectors in
the database."""

from __future__ import annotations

from typing import Any

import dns.name
import dns.rdatatype
import dns.zone
import pytest

from mailplane.config.settings import ConfigError
from mailplane.net.mta_sts import policy_id
from mailplane.node.dkim_admin import dns_records_cli
from mailplane.signing import selectors
from mailplane.signing.keys import txt_value
from mailplane.storage import dkim_repo
from tests.conftest import SettingsFactory
from tests.factories.signing import SigningEnv, txt_records

PUBLIC: dict[str, Any] = {
    "smtp_host": "smtp.example.net", "pop3_host": "pop.example.net",
    "web_host": "www.example.net", "submission_port": 587, "submission_tls_port": 465,
    "pop3_port": 110, "pop3_tls_port": 995,
    "mx_hosts": ["mx1.example.net", "mx2.example.net"],
    "sending_addresses": ["198.51.100.10", "2001:db8::10/64"],
    "dmarc_policy": "quarantine", "dmarc_rua": "mailto:dmarc@reports.example.com",
}


def _zone(text: str) -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=dns.name.root, relativize=False,
                              check_origin=False)


def _rdatas(zone: dns.zone.Zone, name: str, rdtype: str) -> list[str]:
    node = zone.get_node(dns.name.from_text(name))
    if node is None:
        return []
    found = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
    if found is None:
        return []
    if rdtype == "TXT":
        return sorted(b"".join(r.strings).decode() for r in found)
    return sorted(r.to_text() for r in found)


@pytest.fixture
def configured(signing_env: SigningEnv) -> SigningEnv:
    env = signing_env
    env.settings = env.settings.model_copy(update={
        "public": env.settings.public.model_copy(update=PUBLIC),
        "srs": env.settings.srs.model_copy(update={"domain": "srs.example.net"}),
        "mx": env.settings.mx.model_copy(update={"hostname": "mx1.example.net"}),
    })
    return env


def test_every_record_of_every_base_domain_parses_back_with_dnspythons_zone_parser(
        configured: SigningEnv) -> None:
    env = configured
    names = env.selectors(prefix="s2026")
    with env.factory() as session:
        keys = {row.selector: row for row in dkim_repo.in_dns(session)}
    zone = _zone(dns_records_cli(env.settings, clock=env.clock))
    for domain in ("example.net", "example.org"):
        mx = ["10 mx1.example.net.", "10 mx2.example.net."]
        assert _rdatas(zone, f"{domain}.", "MX") == mx
        assert _rdatas(zone, f"*.{domain}.", "MX") == mx  # customer subdomains
        spf = ["v=spf1 ip4:198.51.100.10 ip6:2001:db8::10/64 -all"]
        assert _rdatas(zone, f"{domain}.", "TXT") == spf
        assert _rdatas(zone, f"*.{domain}.", "TXT") == spf
        for name in names:  # long RSA keys split into 255-octet strings, joined back here
            row = keys[name]
            assert _rdatas(zone, f"{name}._domainkey.{domain}.", "TXT") == [
                txt_value(row.algorithm, row.public_key)]  # type: ignore[arg-type]
        assert _rdatas(zone, f"_dmarc.{domain}.", "TXT") == [
            "v=DMARC1; p=quarantine; adkim=r; aspf=r; rua=mailto:dmarc@reports.example.com"]
        assert _rdatas(zone, f"_mta-sts.{domain}.", "TXT") == [
            f"v=STSv1; id={policy_id(env.settings)}"]
        assert _rdatas(zone, f"mta-sts.{domain}.", "CNAME") == ["www.example.net."]
        assert _rdatas(zone, f"_smtp._tls.{domain}.", "TXT") == [
            f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}"]
        for service, srv in (("submissions", "0 1 465 smtp.example.net."),
                             ("submission", "10 1 587 smtp.example.net."),
                             ("pop3s", "0 1 995 pop.example.net."),
                             ("pop3", "10 1 110 pop.example.net."),
                             ("imaps", "0 0 0 ."), ("imap", "0 0 0 ."),
                             ("autodiscover", "0 1 443 www.example.net.")):
            assert _rdatas(zone, f"_{service}._tcp.{domain}.", "SRV") == [srv], service
        for name in ("autoconfig", "autodiscover"):
            assert _rdatas(zone, f"{name}.{domain}.", "CNAME") == ["www.example.net."]
    # Names of ours under example.net: the EHLO names and the SRS domain.
    for host in ("mx1.example.net.", "mx2.example.net."):
        assert _rdatas(zone, host, "TXT") == [
            "v=spf1 ip4:198.51.100.10 ip6:2001:db8::10/64 -all"]
    assert _rdatas(zone, "srs.example.net.", "MX") == ["10 mx1.example.net.",
                                                       "10 mx2.example.net."]
    assert _rdatas(zone, "srs.example.org.", "MX") == []


def test_retired_and_unpublished_selectors_are_not_printed(configured: SigningEnv) -> None:
    env = configured
    [active] = env.selectors(prefix="on", algorithms=("ed25519",))
    [draft] = selectors.generate_selectors(env.settings, env.factory, algorithms=["rsa"],
                                           now=env.clock.now(), name="draft")
    [old] = env.selectors(prefix="old", algorithms=("rsa",))
    [new] = env.selectors(prefix="new", algorithms=("rsa",))
    selectors.retire(env.settings, env.factory, selector=old, now=env.clock.now())
    text = dns_records_cli(env.settings, domains=["example.org"], clock=env.clock)
    printed = {name for name in txt_records(text) if "._domainkey." in name}
    assert printed == {f"{active}._domainkey.example.org", f"{new}._domainkey.example.org"}
    assert draft.selector not in text


def test_the_demo_configuration_says_what_must_change_before_publishing(
        signing_env: SigningEnv, make_settings: SettingsFactory) -> None:
    env = signing_env
    env.settings = make_settings(mx={"hostname": "mx.mailplane.test"},
                                 database_url=env.settings.database_url)
    text = dns_records_cli(env.settings, clock=env.clock)
    assert "; WARNING: [public] host names are the demo's (localhost)" in text
    assert "[mx] hostname mx.mailplane.test is not under a base domain" in text
    assert "no DKIM selector published yet" in text
    zone = _zone(text)  # still valid zone syntax
    assert _rdatas(zone, "example.net.", "TXT") == ["v=spf1 mx -all"]
    assert _rdatas(zone, "_dmarc.example.net.", "TXT") == [
        "v=DMARC1; p=none; adkim=r; aspf=r; rua=mailto:dmarc-reports@example.net"]


@pytest.mark.parametrize(("key", "value"), [
    ("sending_addresses", ["198.51.100.300"]), ("mx_hosts", ["mx 1.example.net"]),
    ("dmarc_rua", "https://reports.example.com"), ("tlsrpt_rua", "ftp://x"),
    ("web_host", "www.example.net\r\nX: y"), ("dmarc_rua", 'mailto:a@b.test; p=none'),
    ("dmarc_policy", "always"),
])
def test_bad_public_values_stop_start_up_naming_the_key(
        make_settings: SettingsFactory, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"public.{key}"):
        make_settings(public={key: value})
