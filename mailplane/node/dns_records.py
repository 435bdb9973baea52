"""``mailplane dns-records``: every record an operator publishes for each base domain, in
zone-file syntax (RFC 1035 §5), from the configuration and the DKIM selectors in the
database (SPEC §8b; docs/operations.md §4.1 walks through them).

Customer addresses live under ``<subdomain>.<base domain>``, so mail-receiving records
(MX, SPF) are published for the base domain and as wildcards for its subdomains.  DKIM,
DMARC, MTA-STS, TLS-RPT and the client-setup records are per base domain: a name under a
wildcard that gets any record of its own stops matching the wildcard (RFC 4592 §2.2), so
per-subdomain records would need the subdomain's MX and SPF spelled out too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailplane.config.settings import Settings
from mailplane.net import mta_sts
from mailplane.signing.keys import check_algorithm, txt_strings, txt_value
from mailplane.signing.policy import base_domain_of
from mailplane.storage import dkim_repo
from mailplane.storage.dkim_repo import SelectorRow

TTL_SECONDS = 3600
_DEMO_HOSTS = {"localhost"}


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    rtype: str
    rdata: str
    comment: str = ""


def fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def txt(name: str, value: str, comment: str = "") -> Record:
    """A TXT record whose strings join to ``value`` (split at 255 octets)."""
    strings = ['"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
               for part in txt_strings(value)]
    rdata = strings[0] if len(strings) == 1 else "( " + "\n        ".join(strings) + " )"
    return Record(fqdn(name), "TXT", rdata, comment)


def dkim_records(base_domains: Sequence[str], selectors: Sequence[SelectorRow]) -> list[Record]:
    return [txt(f"{row.selector}._domainkey.{domain}",
                txt_value(check_algorithm(row.algorithm), row.public_key),
                f"DKIM {row.algorithm}, {row.state}")
            for domain in base_domains for row in selectors]


def _spf(settings: Settings, *, host: bool = False) -> str:
    """``sending_addresses`` when configured; else ``mx`` for a mail domain (its MX
    hosts send) and ``a`` for a host name (the host itself sends)."""
    mechanisms = [f"ip6:{net}" if ":" in net else f"ip4:{net}"
                  for net in settings.public.sending_addresses] or ["a" if host else "mx"]
    return "v=spf1 " + " ".join(mechanisms) + " -all"


def _report_address(configured: str, local: str, domain: str) -> str:
    return configured or f"mailto:{local}@{domain}"


def _under(host: str, domain: str) -> bool:
    return host != domain and base_domain_of(host, [domain]) == domain


def domain_records(settings: Settings, domain: str,
                   selectors: Sequence[SelectorRow]) -> list[Record]:
    """Every record of one base domain."""
    public = settings.public
    mx_hosts = mta_sts.mx_hosts(settings)
    records: list[Record] = []
    for name, what in ((domain, "the base domain"),
                       (f"*.{domain}", "every customer subdomain")):
        records += [Record(fqdn(name), "MX", f"10 {fqdn(host)}", f"inbound mail: {what}")
                    for host in mx_hosts]
        records.append(txt(name, _spf(settings), "SPF (RFC 7208): the hosts mail leaves "
                                                 "from"))
    hosts = sorted({*mx_hosts, settings.mx.hostname})
    records += [txt(host, _spf(settings, host=True),
                    "SPF of an EHLO name (null-sender mail: DSNs, auto-replies, notices); "
                    "its A/AAAA and PTR are yours to publish")
                for host in hosts if _under(host, domain)]
    srs_domain = settings.srs.domain or settings.mx.hostname
    if _under(srs_domain, domain) and srs_domain not in hosts:
        records += [Record(fqdn(srs_domain), "MX", f"10 {fqdn(mx)}",
                           "SRS: bounces of forwarded mail come back here")
                    for mx in mx_hosts]
        records.append(txt(srs_domain, _spf(settings), "SPF of the SRS envelope sender"))
    records += dkim_records([domain], selectors)
    dmarc_rua = _report_address(public.dmarc_rua, "dmarc-reports", domain)
    comment = "DMARC (RFC 9989): relaxed alignment covers customer subdomains"
    rua_domain = dmarc_rua.rpartition("@")[2].lower()
    if base_domain_of(rua_domain, [domain]) is None:
        comment += (f"; reports go to another domain, which must publish "
                    f'{domain}._report._dmarc.{rua_domain}. TXT "v=DMARC1"')
    records.append(txt(f"_dmarc.{domain}",
                       f"v=DMARC1; p={public.dmarc_policy}; adkim=r; aspf=r; rua={dmarc_rua}",
                       comment))
    records.append(txt(f"_mta-sts.{domain}", mta_sts.txt_value(settings),
                       "MTA-STS (RFC 8461): the id changes with the policy"))
    records.append(Record(fqdn(f"mta-sts.{domain}"), "CNAME", fqdn(public.web_host),
                          "serves /.well-known/mta-sts.txt over HTTPS"))
    tlsrpt_rua = _report_address(public.tlsrpt_rua, "tls-reports", domain)
    records.append(txt(f"_smtp._tls.{domain}", f"v=TLSRPTv1; rua={tlsrpt_rua}",
                       "TLS-RPT (RFC 8460): senders' daily TLS reports"))
    records += _client_setup(settings, domain)
    return records


def _client_setup(settings: Settings, domain: str) -> list[Record]:
    """RFC 6186 / RFC 8314 service records (a target of "." says "not offered") and the
    autoconfig (Thunderbird) / Autodiscover (Outlook) names."""
    public = settings.public
    imap = fqdn(public.imap_host) if public.imap_host else ""

    def srv(service: str, priority: int, port: int, host: str, comment: str = "") -> Record:
        rdata = f"{priority} 1 {port} {host}" if host else "0 0 0 ."
        return Record(fqdn(f"_{service}._tcp.{domain}"), "SRV", rdata, comment)

    return [
        srv("submissions", 0, public.submission_tls_port, fqdn(public.smtp_host),
            "mail clients (RFC 6186, RFC 8314): implicit TLS first"),
        srv("submission", 10, public.submission_port, fqdn(public.smtp_host)),
        srv("pop3s", 0, public.pop3_tls_port, fqdn(public.pop3_host)),
        srv("pop3", 10, public.pop3_port, fqdn(public.pop3_host)),
        srv("imaps", 0, public.imap_tls_port, imap,
            "" if imap else "IMAP not offered ([public] imap_host)"),
        srv("imap", 10, public.imap_port, imap),
        Record(fqdn(f"autoconfig.{domain}"), "CNAME", fqdn(public.web_host),
               "Thunderbird autoconfig"),
        Record(fqdn(f"autodiscover.{domain}"), "CNAME", fqdn(public.web_host),
               "Outlook Autodiscover"),
        srv("autodiscover", 0, 443, fqdn(public.web_host)),
    ]


def warnings(settings: Settings) -> list[str]:
    """What makes the printed records wrong or weak for this configuration."""
    notes: list[str] = []
    public = settings.public
    demo = sorted({public.smtp_host, public.pop3_host, public.web_host} & _DEMO_HOSTS)
    if demo:
        notes.append(f"[public] host names are the demo's ({', '.join(demo)}): set "
                     "smtp_host, pop3_host and web_host before publishing")
    if base_domain_of(settings.mx.hostname, settings.base_domains) is None:
        notes.append(f"[mx] hostname {settings.mx.hostname} is not under a base domain: "
                     "DSNs and notices come From it, so DMARC cannot align for them")
    return notes


def render(settings: Settings, selectors: Sequence[SelectorRow], *, now: datetime,
           domains: Sequence[str] | None = None) -> str:
    lines = [f"; mailplane dns-records, {now:%Y-%m-%d %H:%M} UTC",
             f"$TTL {TTL_SECONDS}"]
    lines += [f"; WARNING: {note}" for note in warnings(settings)]
    if not selectors:
        lines.append("; WARNING: no DKIM selector published yet: mailplane dkim generate, "
                     "then mailplane dkim publish <selector>")
    for domain in domains or settings.base_domains:
        lines += ["", f"; --- {domain} ---"]
        lines += [format_record(record) for record in
                  domain_records(settings, domain, selectors)]
    return "\n".join(lines) + "\n"


def format_record(record: Record) -> str:
    line = f"{record.name:<40} IN {record.rtype:<5} {record.rdata}"
    return f"; {record.comment}\n{line}" if record.comment else line


def dns_records_text(settings: Settings, factory: sessionmaker[Session], *, now: datetime,
                     domains: Sequence[str] | None = None) -> str:
    with factory() as session:
        selectors = dkim_repo.in_dns(session)
    return render(settings, selectors, now=now, domains=domains)
