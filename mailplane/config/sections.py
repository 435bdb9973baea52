"""The sections of the configuration (``[api]``, ``[mx]``, …): each key's type, default,
bounds and why, next to it.  :mod:`mailplane.config.settings` assembles them into the one
:class:`~mailplane.config.settings.Settings` object and loads it.  (Longer than ~300 lines
because it is a table of declarations: one class per section, nothing to follow.)"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from mailplane.config.limits import (
    MIME_DEPTH_CEILING,
    MIME_PARTS_CEILING,
    LimitExemptions,
    ListenerLimits,
    SmtpErrorLimits,
    check_networks,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiConfig(ListenerLimits, _Section):
    """The management API's limits under abuse (SPEC §8a; docs/security.md; the
    connection keys of :class:`ListenerLimits` in docs/security.md)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: The portal calls from few addresses with pooled connections (SPEC §8a).
    max_connections_per_ip: int = Field(default=256, ge=1)
    #: Seconds an idle keep-alive connection stays open after a response.
    keep_alive_seconds: float = Field(default=5.0, gt=0)
    #: Language of API messages when a request has no usable ``Accept-Language`` and no
    #: portal session (operators' scripts, integrations); see mailplane/api/language.py.
    default_language: Literal["ja", "en"] = "en"
    #: Request bodies larger than this are refused with 413 before they are read (the
    #: largest legitimate body, a full deny list, is about 60 KB).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Requests of one API process that hold a database session at once; the API has its
    #: own connection pool of twice this size, so a request never waits for a connection.
    max_concurrent_requests: int = Field(default=8, ge=1, le=32)
    #: How long a request waits for one of those turns before it gets 503 + Retry-After.
    queue_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    #: Requests of one customer key at once (operator and portal keys are bounded only by
    #: ``max_concurrent_requests``); more get 429 + Retry-After.
    max_concurrent_per_key: int = Field(default=4, ge=1)
    #: Requests from one client IP in flight before their key is verified; more get 429.
    #: Generous: many customers may share one address (CGNAT), and a legitimate client's
    #: parallel requests count here until each has taken its turn and been verified.
    max_unauthenticated_per_ip: int = Field(default=64, ge=1)
    #: argon2 hashes and checks the API runs at once (new and changed POP passwords, keys
    #: issued before schema 0005); more wait up to ``queue_timeout_seconds``, then 503.
    max_concurrent_hashing: int = Field(default=2, ge=1, le=32)
    #: How long an ``Idempotency-Key`` replays its first response (SPEC §1, issue 14).
    idempotency_hours: int = Field(default=24, ge=1, le=24 * 30)
    #: Seals stored replays (AES-GCM): they hold the initial password.  Every node must
    #: use the same value; empty = generated once into ``<state_dir>/api-replay.secret``
    #: (shared by the nodes when ``state_dir`` is the cluster's shared volume).
    replay_secret: SecretStr = SecretStr("")


class MxConfig(ListenerLimits, SmtpErrorLimits, _Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    hostname: str = "mx.mailplane.test"
    #: Offer STARTTLS (RFC 3207) with the ``[tls]`` certificate, TLS 1.2 or newer (SPEC
    #: §8b: the big receivers and senders expect it; mail in clear is readable on the way).
    starttls: bool = True
    #: RFC 5321 §4.5.3.1.7: the server states its limit; larger mail gets 552.
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(default=100, ge=1)
    #: RFC 5321 §4.5.3.2.7: at least 5 minutes between commands (shorter under pressure).
    idle_timeout_seconds: float = Field(default=300.0, gt=0)
    #: A message nested deeper, or with more MIME parts, is refused at DATA with
    #: ``554 5.6.0`` (mail/mime.py); applies to submission too.
    max_mime_depth: int = Field(default=128, ge=1, le=MIME_DEPTH_CEILING)
    max_mime_parts: int = Field(default=2000, ge=1, le=MIME_PARTS_CEILING)
    #: Seconds between polls of the policy revision (DESIGN "Keeping the SMTP path fast").
    policy_refresh_seconds: float = Field(default=2.0, gt=0)
    #: MX processes of the node, sharing the port (``SO_REUSEPORT``) and the connection
    #: limits (counted for the node, mailplane/net/anvil.py); default one per CPU.
    workers: int = Field(default_factory=lambda: min(os.cpu_count() or 1, 64), ge=1, le=64)
    #: How accepted mail is made durable before the 250 (SPEC §8): "fsync" every file and
    #: directory, "syncfs" once per filesystem per batch (Linux >= 5.8), or "auto" (syncfs
    #: where supported).  See mailplane/mailstore/durability.py and docs/operations.md.
    durability: Literal["auto", "syncfs", "fsync"] = "auto"
    #: A bare LF in DATA (old senders, scripts): "normalize" accepts it as a line end and
    #: stores CRLF, like Postfix 3.9's default ``smtpd_forbid_bare_newline = normalize``
    #: (DATA still ends only at <CRLF>.<CRLF>); "reject" refuses the message with 550.
    #: A bare CR is always refused.  Applies to submission too (SPEC §8a: scanners, NAS
    #: boxes and cron send bare LF through submission as much as to the MX).
    bare_newline: Literal["normalize", "reject"] = "normalize"
    #: Role mailboxes at every hosted domain (RFC 5321 §4.5.1: ``postmaster`` MUST be
    #: accepted; RFC 2142: ``abuse``): role local part -> one destination address, hosted
    #: (its inbox) or external (a forward job).  A role not listed, or an empty
    #: destination, is refused as before (550 5.1.1).  Each role must be one of
    #: ``addresses.reserved_local_parts`` so no customer can own it (checked by Settings).
    #: See mailplane/smtp/role_mail.py.
    role_mailboxes: dict[str, str] = Field(default_factory=dict)
    #: Role-mail copies accepted per client IP per hour (sliding, shared by every node
    #: through ``rate_counters``); past it RCPT gets ``450 4.7.1``.  0 = no limit.
    role_mail_per_ip_per_hour: int = Field(default=30, ge=0)

    @field_validator("role_mailboxes")
    @classmethod
    def _role_destinations(cls, value: dict[str, str]) -> dict[str, str]:
        """Lower-case role names; each destination empty (role off) or one address."""
        cleaned: dict[str, str] = {}
        for role, destination in value.items():
            name = role.strip().lower()
            target = destination.strip()
            if not name or "@" in name:
                raise ValueError(f"role_mailboxes: {role!r} is not a local part")
            if target and not _ROLE_DESTINATION.fullmatch(target):
                raise ValueError(f"role_mailboxes.{name}: {destination!r} is not an address")
            local, _, domain = target.rpartition("@")
            cleaned[name] = f"{local}@{domain.lower()}" if target else ""
        return cleaned


#: One plain address: a local part without spaces or brackets, a dotted domain.
_ROLE_DESTINATION = re.compile(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


class SubmissionConfig(ListenerLimits, SmtpErrorLimits, _Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    starttls_port: int = Field(default=2587, ge=0, le=65535)
    tls_port: int = Field(default=2465, ge=0, le=65535)
    #: Development only: allow AUTH without TLS from loopback peers.
    allow_plain_auth_on_loopback: bool = False
    max_connections_per_ip: int = Field(default=20, ge=1)
    idle_timeout_seconds: float = Field(default=300.0, gt=0)
    #: More RCPTs in one transaction get ``452 4.5.3`` (the client sends them next).
    max_recipients_per_message: int = Field(default=100, ge=1)
    #: Sending quotas per hour (sliding), shared by every process and node through the
    #: database; over them DATA is answered ``451 4.7.1``.  0 = no limit (SPEC §8a).
    account_messages_per_hour: int = Field(default=100, ge=0)
    account_recipients_per_hour: int = Field(default=300, ge=0)
    ip_messages_per_hour: int = Field(default=300, ge=0)
    ip_recipients_per_hour: int = Field(default=1000, ge=0)

    @model_validator(mode="after")
    def _a_full_message_fits(self) -> SubmissionConfig:
        """A message with the most recipients allowed must fit an hour's quota, or it
        would be deferred for ever."""
        for name in ("account_recipients_per_hour", "ip_recipients_per_hour"):
            limit = getattr(self, name)
            if 0 < limit < self.max_recipients_per_message:
                raise ValueError(f"{name} must be 0 or at least max_recipients_per_message")
        return self


class Pop3Config(ListenerLimits, _Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2110, ge=0, le=65535)
    tls_port: int = Field(default=2995, ge=0, le=65535)
    #: Development only: allow USER/PASS without TLS from loopback peers.
    allow_plain_auth_on_loopback: bool = False
    #: RFC 1939 §3: an autologout timer of at least 10 minutes.
    idle_timeout_seconds: float = Field(default=600.0, ge=600)
    max_connections_per_ip: int = Field(default=20, ge=1)
    #: Seconds a client has to log in (Dovecot closes idle logins after 3 minutes).
    greeting_deadline_seconds: float = Field(default=60.0, gt=0)


class ImapConfig(_Section):
    """どこでもメール's IMAP (SPEC §9b): Dovecot over the same Maildirs, every login checked
    by mailplane itself (docs/architecture.md, "IMAP and webmail")."""

    enabled: bool = True
    #: Start a private Dovecot with the node and stop it by its PID (``make run``, one
    #: machine); false = Dovecot runs under its own service unit (production,
    #: ``mailplane imap-config``) and the node serves only the login check.
    run_dovecot: bool = True
    host: str = "127.0.0.1"
    #: IMAP with STARTTLS (RFC 9051 §6.2.1) and IMAP over TLS (RFC 8314).
    port: int = Field(default=2143, ge=1, le=65535)
    tls_port: int = Field(default=2993, ge=1, le=65535)
    #: The login check Dovecot's passdb (and the webmail's sign-in) call: HTTP on a loopback
    #: or internal address, never a public one.
    auth_host: str = "127.0.0.1"
    auth_port: int = Field(default=2144, ge=1, le=65535)
    #: Bearer secret of the login check; "" = generated once into
    #: ``<state_dir>/imap-auth.secret`` (mode 600).  The same on every node.
    auth_secret: SecretStr = SecretStr("")
    #: Login checks at once; more wait, and after ``auth_timeout_seconds`` Dovecot is told
    #: "try again later" (a flood never takes the database connections delivery needs).
    max_concurrent_checks: int = Field(default=16, ge=1, le=1024)
    auth_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    #: Who owns the Maildirs when mailplane runs as root: Dovecot never reads or writes
    #: mail as root, so a root node hands the mail tree to this system user.
    mail_owner: str = "mail"
    #: IMAP sessions of one user from one IP (Dovecot ``mail_max_userip_connections``).
    max_connections_per_user_ip: int = Field(default=20, ge=1)
    #: Several nodes sharing the mail volume: Dovecot's indexes in this directory on the
    #: node's own disk (the Maildirs and their ``dovecot-uidlist`` stay shared), with
    #: Dovecot's settings for mail on NFS.  "" = indexes inside the Maildirs (one node).
    index_dir: str = ""
    dovecot_binary: str = "/usr/sbin/dovecot"
    #: Ends the open IMAP sessions of an address whose password was changed or reissued,
    #: or that was suspended, terminated or deleted (``doveadm kick``,
    #: :mod:`mailplane.anywhere.sessions`).
    doveadm_binary: str = "/usr/bin/doveadm"
    #: Dovecot's anvil socket, which knows who is logged in: "" = the node's own
    #: Dovecot's (``run_dovecot``), or Debian's ``/run/dovecot/anvil`` for Dovecot under
    #: its own unit.
    anvil_socket: str = ""

    @field_validator("mail_owner")
    @classmethod
    def _user_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
            raise ValueError(f"{value!r} is not a system user name")
        return value


class WebmailConfig(_Section):
    """どこでもメール, the webmail (SPEC §9b): Roundcube from Debian, in Japanese, over the
    IMAP above and mailplane's submission."""

    enabled: bool = True
    #: Serve Roundcube with PHP's built-in server from the node (``make run``); false =
    #: Roundcube runs under its own units (php-fpm behind the web server, production).
    run_php: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    #: Where customers open the webmail: the portal links here (quarantine and overseas
    #: screens).  "" = not offered.
    public_url: str = "http://127.0.0.1:8090/"
    #: Addresses the webmail hosts connect from.  Their submission is not subject to the
    #: overseas-send window (001 L4645-4647: the window is for the customer's own mail
    #: program, not for どこでもメール); every other check applies.  Dovecot
    #: (``login_trusted_networks``) and submission (``XCLIENT ADDR``) take the browser's
    #: address from them, and the login guard counts it instead: a webmail host is never
    #: locked as one address (auth/login_guard.py).
    networks: list[str] = Field(default_factory=list)
    #: The local address the node's own Roundcube connects from ("" = the system's choice).
    source_address: str = ""
    #: Sessions end after this long without a request.
    session_minutes: int = Field(default=30, ge=1, le=24 * 60)
    product_name: str = "どこでもメール"
    roundcube_dir: str = "/usr/share/roundcube"
    php_binary: str = "php"
    #: PHP built-in server processes (``PHP_CLI_SERVER_WORKERS``).
    php_workers: int = Field(default=4, ge=1, le=64)

    @field_validator("networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return check_networks(value)

    @field_validator("source_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value:
            try:
                ipaddress.ip_address(value)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an IP address") from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s\"'<>]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class PortalConfig(_Section):
    """The customer portal's sign-in (SPEC §10: My Page sessions)."""

    #: Language of API messages for portal (session) requests without ``Accept-Language``.
    language: Literal["ja", "en"] = "ja"
    #: A session ends after this long without a request ...
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    #: ... and at the latest this long after sign-in, however active.
    session_absolute_hours: int = Field(default=8, ge=1, le=24 * 7)
    #: The ``Secure`` cookie flag: "auto" sets it when the request came over https.
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    #: Where the terms of use are published (a link on the registration screen); "" = none.
    terms_url: str = ""


class PublicConfig(_Section):
    """Host names and ports customers put into their mail clients (setup screen,
    autoconfig, Autodiscover, .mobileconfig) — the names the world reaches, distinct from
    the bind addresses of the listeners (a load balancer or NAT may sit between)."""

    #: Shown to customers and in the profiles; "" = the first base domain.
    provider_name: str = ""
    pop3_host: str = "localhost"
    #: POP3 with STARTTLS (STLS, RFC 2595) and POP3 over TLS (RFC 8314).
    pop3_port: int = Field(default=2110, ge=1, le=65535)
    pop3_tls_port: int = Field(default=2995, ge=1, le=65535)
    smtp_host: str = "localhost"
    #: Submission with STARTTLS (RFC 6409) and submission over TLS (RFC 8314).
    submission_port: int = Field(default=2587, ge=1, le=65535)
    submission_tls_port: int = Field(default=2465, ge=1, le=65535)

    #: IMAP for customers is Dovecot's (docs/operations.md), if a deployment runs it:
    #: "" = none, and ``mailplane dns-records`` publishes the RFC 6186 "not offered" SRV.
    imap_host: str = ""
    imap_port: int = Field(default=143, ge=1, le=65535)
    imap_tls_port: int = Field(default=993, ge=1, le=65535)
    #: The public name of the API (portal, autoconfig, Autodiscover, the MTA-STS policy):
    #: the target of the ``autoconfig``/``autodiscover``/``mta-sts`` CNAMEs.
    web_host: str = "localhost"
    #: The MX host names of every base domain (``mailplane dns-records``, the MTA-STS
    #: policy); empty = ``[mx] hostname`` alone.
    mx_hosts: list[str] = Field(default_factory=list)
    #: Addresses (or CIDRs) mail leaves the platform from — the worker nodes, or the
    #: smarthost — for the SPF record; empty = ``mx`` (the workers are the MX nodes).
    sending_addresses: list[str] = Field(default_factory=list)
    #: The DMARC policy ``dns-records`` prints (RFC 9989): start with "none", read the
    #: aggregate reports, then "quarantine" and "reject".
    dmarc_policy: Literal["none", "quarantine", "reject"] = "none"
    #: Where DMARC aggregate reports go (a mailbox that exists); "" =
    #: ``mailto:dmarc-reports@<base domain>``.
    dmarc_rua: str = ""
    #: Where TLS reports go (RFC 8460: ``mailto:`` or ``https:``); "" =
    #: ``mailto:tls-reports@<base domain>``.
    tlsrpt_rua: str = ""

    @field_validator("pop3_host", "smtp_host", "web_host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        return _host_name(value)

    @field_validator("imap_host")
    @classmethod
    def _optional_host_name(cls, value: str) -> str:
        return _host_name(value) if value else value

    @field_validator("mx_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        return [_host_name(host) for host in value]

    @field_validator("sending_addresses")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return check_networks(value)

    @field_validator("dmarc_rua")
    @classmethod
    def _dmarc_uri(cls, value: str) -> str:
        if value and not _MAILTO.fullmatch(value):
            raise ValueError(f"{value!r} is not mailto:<address> (RFC 9989)")
        return value

    @field_validator("tlsrpt_rua")
    @classmethod
    def _tlsrpt_uri(cls, value: str) -> str:
        if value and not (_MAILTO.fullmatch(value) or _HTTPS.fullmatch(value)):
            raise ValueError(f"{value!r} is not mailto:<address> or https://<url> (RFC 8460)")
        return value


_MAILTO = re.compile(r"mailto:[^\s;,!@]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")
_HTTPS = re.compile(r"https://[^\s;,!]+")


def _host_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", value):
        raise ValueError(f"{value!r} is not a host name")
    return value.lower()


class DkimConfig(_Section):
    """DKIM signing of mail leaving the platform (SPEC §8b; docs/operations.md §4.2).

    Which selectors sign is in the database (``mailplane dkim …``), so every node agrees;
    the private keys are files, the same on every node."""

    #: Sign with the active selectors (none active: mail leaves unsigned, with a warning).
    enabled: bool = True
    #: Where private keys are (``<selector>.pem``, mode 600): "" = ``<state_dir>/dkim``,
    #: the shared volume; or a directory of its own on every node (a secrets mount).
    keys_dir: str = ""
    #: How soon a node sees a selector activated on another one.
    refresh_seconds: float = Field(default=60.0, gt=0, le=3600)
    #: An active selector whose key this node cannot use: "tempfail" keeps the mail
    #: queued (4.7.0, retried) until the key is there, as Postfix does when its signing
    #: milter fails; "unsigned" sends without that signature.
    on_error: Literal["tempfail", "unsigned"] = "tempfail"
    #: RSA key size of ``mailplane dkim generate`` (RFC 8301: at least 1024, 2048 usual).
    rsa_bits: int = Field(default=2048, ge=2048, le=4096)
    #: ARC-seal remote forwards (RFC 8617) with the active RSA selector; off by default:
    #: ARC is experimental and headed to Historic, receivers weigh it little.
    arc_seal_forwards: bool = False


class MtaStsConfig(_Section):
    """The MTA-STS policy the API serves at ``/.well-known/mta-sts.txt`` (RFC 8461)."""

    #: "testing": senders report (TLS-RPT) but deliver anyway; "enforce": senders that
    #: support MTA-STS refuse to deliver without valid TLS to a listed MX; "none": the
    #: policy is being withdrawn (RFC 8461 §8.3).
    mode: Literal["testing", "enforce", "none"] = "testing"
    #: How long senders cache the policy: RFC 8461 recommends weeks (at most a year).
    max_age_seconds: int = Field(default=604800, ge=86400, le=31557600)


class TlsConfig(_Section):
    """The node's certificate for the MX (STARTTLS), submission and POP3: PEM chain and
    key; both empty = a self-signed pair generated once into ``{state_dir}/tls/``."""

    cert_file: str = ""
    key_file: str = ""

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("set both cert_file and key_file, or neither (self-signed)")
        return self


class AddressConfig(_Section):
    """SPEC §1 rules that an ISP may tune."""

    subdomain_pattern: str = "[a-z]0[0-9]"
    included_per_contract: int = Field(default=5, ge=0)
    extra_monthly_charge_yen: int = Field(default=330, ge=0)
    deleted_cooloff_days: int = Field(default=180, ge=0)
    default_quota_bytes: int = Field(default=1024**3, ge=1024)
    max_quota_bytes: int = Field(default=10 * 1024**3, ge=1024)
    #: Dovecot's ``quota_grace``: a mailbox (inbox + quarantine) still under its quota
    #: takes a message that ends at most this share of the quota over it; anything
    #: larger gets ``452 4.2.2`` (SPEC §8; rules/quota.py, docs/security.md).
    quota_grace_percent: int = Field(default=10, ge=0, le=100)
    max_list_entries: int = Field(default=200, ge=1)
    max_entry_length: int = Field(default=255, ge=1)
    reissue_password_length: int = Field(default=10, ge=10, le=32)
    #: Local parts no customer may register, on any subdomain: the names the ISP's own mail
    #: needs (RFC 5321 postmaster, RFC 2142's operational mailboxes, the names certificate
    #: authorities mail to prove control of a domain, system senders).  Which and why:
    #: mailplane/rules/registration.py.  Addresses registered before are left alone.
    reserved_local_parts: list[str] = Field(default_factory=lambda: [
        "postmaster", "abuse", "noc", "security", "hostmaster", "webmaster", "www",
        "usenet", "news", "uucp", "ftp", "admin", "administrator", "root", "mailer-daemon",
    ])

    @field_validator("reserved_local_parts")
    @classmethod
    def _lower_case(cls, value: list[str]) -> list[str]:
        return [name.strip().lower() for name in value if name.strip()]

    @field_validator("subdomain_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


class AccountConfig(_Section):
    """The customer's account around the settings (SPEC §9a; 000 L60-L200, 003 Art.16-20):
    one-time codes for password recovery and a contact address change, their abuse limits,
    and the end of a contract (docs/security.md "Account recovery")."""

    #: A code mailed to the contact address (recovery) or to a new contact address lives
    #: this long, and may be tried this many times before it is void.
    code_minutes: int = Field(default=30, ge=5, le=24 * 60)
    code_max_attempts: int = Field(default=5, ge=1, le=20)
    #: Recovery codes for one customer number per hour (counted for numbers that do not
    #: exist too, so the limit reveals nothing), and contact-change codes per contract.
    codes_per_account_per_hour: int = Field(default=3, ge=1)
    #: Recovery requests and code checks from one client IP per hour (IPv6: its /64);
    #: more get 429 + Retry-After.  Generous for a household or an office behind one NAT.
    recovery_requests_per_ip_per_hour: int = Field(default=20, ge=1)
    code_checks_per_ip_per_hour: int = Field(default=60, ge=1)
    #: Code checks for one customer number per hour, whatever the IP (a distributed
    #: guesser gets no more tries by changing address).
    code_checks_per_account_per_hour: int = Field(default=10, ge=1)
    #: 003 Art.18: a customer's 解約 takes effect at the end of a month, requested at least
    #: this many days before.
    termination_notice_days: int = Field(default=10, ge=0, le=60)
    #: A terminated contract's mail, settings and addresses are kept this long (the
    #: operator may restore it meanwhile), then purged; the addresses stay retired for
    #: ``addresses.deleted_cooloff_days`` from the termination.
    terminated_data_days: int = Field(default=30, ge=0, le=3650)


class VirusConfig(_Section):
    """SPEC §3: the scanner is a hook; a scanner that is down never silently passes mail."""

    engine: Literal["builtin", "clamd", "command"] = "builtin"
    clamd_socket: str = ""
    clamd_host: str = "127.0.0.1"
    clamd_port: int = Field(default=3310, ge=0, le=65535)
    command: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=30.0, gt=0)
    on_error: Literal["tempfail", "accept"] = "tempfail"


class SpamConfig(_Section):
    """SPEC §4: the verdict is a hook with a per-engine threshold."""

    engine: Literal["builtin", "spamd", "rspamd"] = "builtin"
    threshold: float = 5.0
    spamd_host: str = "127.0.0.1"
    spamd_port: int = Field(default=783, ge=0, le=65535)
    rspamd_url: str = "http://127.0.0.1:11333"
    dnsbl_zones: list[str] = Field(default_factory=list)
    dns_timeout_seconds: float = Field(default=2.0, gt=0)
    timeout_seconds: float = Field(default=15.0, gt=0)
    on_error: Literal["tempfail", "accept"] = "accept"


class RetentionConfig(_Section):
    quarantine_days: int = Field(default=7, ge=1)
    inbox_days: int = Field(default=28, ge=1)
    #: Rows of sent or failed outbound jobs (no message bytes) kept for support questions.
    outbound_history_days: int = Field(default=30, ge=1)
    purge_interval_seconds: int = Field(default=3600, ge=1)
    notify_interval_seconds: int = Field(default=3600, ge=1)


class OverseasConfig(_Section):
    """SPEC §7: submission from outside the home countries needs the window ON."""

    home_countries: list[str] = Field(default_factory=lambda: ["JP"])
    trusted_networks: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"]
    )
    window_days: int = Field(default=7, ge=1)
    mmdb_path: str = ""
    unknown_country: Literal["allow", "deny"] = "allow"
    #: CIDR → ISO country code, checked before the database: VPN/CGNAT ranges the data
    #: places abroad, or a lab network made to look foreign in tests.
    country_overrides: dict[str, str] = Field(default_factory=dict)


class OutboundConfig(_Section):
    smarthost: str = ""
    smarthost_port: int = Field(default=25, ge=0, le=65535)
    smarthost_username: str = ""
    smarthost_password: SecretStr = SecretStr("")
    lifetime_hours: float = Field(default=120.0, gt=0)
    max_backoff_seconds: int = Field(default=3600, ge=1)
    #: TCP connect to a remote host, its greeting, and each SMTP reply (Postfix's
    #: smtp_connect_timeout is 30 s; its greeting and command timeouts are 300 s).
    connect_timeout_seconds: float = Field(default=30.0, gt=0)
    #: One DNS lookup (MX, A or AAAA), retries included: the C resolver's 5 s x 2 tries
    #: that Postfix uses, where this was the 30 s connect timeout before issue 20.
    dns_timeout_seconds: float = Field(default=10.0, gt=0)
    # --- concurrency (issue 20; Postfix qmgr/smtp; docs/architecture.md "Outbound") ----
    #: Remote delivery attempts in flight at once in one worker (Postfix's
    #: default_process_limit is 100 smtp processes; here one event loop).
    concurrency_limit: int = Field(default=20, ge=1)
    #: Of those, at most this many to one destination — a recipient domain, or the
    #: smarthost (Postfix's initial_destination_concurrency 5, which its feedback raises
    #: towards default_destination_concurrency_limit 20): one hostile domain can hold
    #: only these slots, never the whole queue.
    destination_concurrency_limit: int = Field(default=5, ge=1)
    #: Hosted (local) deliveries in flight at once: their own lane, never behind remote
    #: attempts (Postfix's local/virtual transports have their own process limits).
    local_concurrency_limit: int = Field(default=8, ge=1)
    #: Jobs one worker holds claimed and not yet recorded (running or waiting for a
    #: slot); it claims more only below this (Postfix's qmgr_message_active_limit).
    active_job_limit: int = Field(default=500, ge=1)
    #: MX addresses tried per delivery attempt, and MX hosts looked up for them
    #: (Postfix's smtp_mx_address_limit, default 5).
    mx_address_limit: int = Field(default=5, ge=1)
    #: Connections that reached a host (TCP established) per attempt before giving up
    #: (Postfix's smtp_mx_session_limit, default 2): a host that accepts and never
    #: greets costs at most this many greeting timeouts.
    mx_session_limit: int = Field(default=2, ge=1)
    #: The whole of one attempt to one destination — DNS, connects, greetings and the
    #: transaction up to the final "." — ends within this; a cut attempt is retried with
    #: backoff.  The reply to the final "." has ``data_done_timeout_seconds`` on top.
    attempt_budget_seconds: float = Field(default=300.0, gt=0)
    #: The wait for the reply to the final "." of DATA, and only that wait (Postfix's
    #: smtp_data_done_timeout, 600 s): receivers scan the message then.  Given up, the
    #: recipients are retried later (4.4.2) — the receiver may have taken the message
    #: after all, so a retry can deliver it twice (RFC 1047); a shorter wait makes that
    #: likelier, never a loss.  Only the destination's own slot waits (lanes).
    data_done_timeout_seconds: float = Field(default=600.0, gt=0, le=3600)
    #: A destination where no host answered (DNS timeout, no connection, no greeting,
    #: the budget used up) is "dead" for this long: its other jobs are deferred without
    #: an attempt until then, never retried in a loop (Postfix's dead destination,
    #: throttled for minimal_backoff_time = 300 s).  0 = off.
    dead_destination_seconds: float = Field(default=300.0, ge=0)
    #: On stop, attempts in flight get this long to finish; the rest are cut and their
    #: jobs given back, due at once (a restart does not wait out a backoff).
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    max_hops: int = Field(default=25, ge=1)
    #: SPEC §6 "mail not addressed to the address in To/Cc (optional)": no reply to Bcc.
    auto_reply_require_recipient_header: bool = True
    #: RFC 3834 §3.3: the null reverse-path by default; "address" sends from the address.
    auto_reply_envelope_sender: Literal["null", "address"] = "null"
    #: RFC 3834 §2 (a responder must not be a tool for abuse; SPEC §6): replies one
    #: address sends, whoever the senders, per minute (sliding) and per day, counted for
    #: every node in ``rate_counters``.  Over a cap the mail is delivered without a reply
    #: (``mailplane_auto_replies_total{outcome="capped_*"}``).  0 = no cap.
    auto_reply_max_per_minute: int = Field(default=10, ge=0)
    auto_reply_max_per_day: int = Field(default=200, ge=0)
    #: DSNs one recipient (the sender of the failed mail) gets per hour, every node
    #: together; more failures are recorded but not reported (RFC 3464 backscatter).
    dsn_per_recipient_per_hour: int = Field(default=30, ge=0)
    #: Where the worker resolves MX/A/AAAA: "" = the system resolver, else "host" or
    #: "host:port" of one nameserver (a split-horizon resolver, or a test's DNS stub).
    dns_nameserver: str = ""
    #: The port remote MX hosts are contacted on: 25 in production (RFC 5321 §4.5.4.2);
    #: another value only to point a node's worker at a capture server in tests.
    mx_port: int = Field(default=25, ge=1, le=65535)
    #: Seconds between queue polls when nothing woke the worker (jobs staged by another
    #: node's MX or API, or by another process of this node, are only seen by polling).
    #: A poll is one indexed read; it claims only when a job is due.
    poll_seconds: float = Field(default=1.0, gt=0)
    #: When the node serves other roles too, send from a process of its own (Postfix's
    #: qmgr/smtp split): outbound bursts never take CPU from SMTP sessions' event loop.
    own_process: bool = True

    @field_validator("dns_nameserver")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value:
            parse_host_port(value, default_port=53)
        return value

    def nameserver(self) -> tuple[str, int] | None:
        """``dns_nameserver`` as ``(host, port)``, or None for the system resolver."""
        if not self.dns_nameserver:
            return None
        return parse_host_port(self.dns_nameserver, default_port=53)


class AuthenticationConfig(_Section):
    """SPEC §8b: SPF, DKIM, DMARC and ARC of inbound mail on the MX (mailplane/mailauth;
    docs/architecture.md "Sender authentication")."""

    #: Where the checks resolve: "" = ``[outbound] dns_nameserver`` (itself "" = the
    #: system resolver); "host" or "host:port" of one caching resolver; "none" = no
    #: lookups at all (the offline demo): results are ``none`` at once, the header says
    #: authentication is off, and no rule reads that as a failure.
    nameserver: str = ""
    #: The longest the checks of one message may take: SPF from the first accepted RCPT,
    #: DKIM/DMARC/ARC from the end of DATA.  Past it a check is ``temperror`` — the
    #: message is never deferred for DNS.
    time_budget_seconds: float = Field(default=5.0, gt=0, le=60)
    #: authserv-id of our Authentication-Results (RFC 8601 §2.5); "" = ``mx.hostname``.
    #: Give every MX node of the platform the same one; incoming headers with it are
    #: removed.
    authserv_id: str = ""
    #: DKIM signatures verified per message (RFC 6376 §6.1: a verifier may limit them).
    max_dkim_signatures: int = Field(default=5, ge=1, le=50)

    @field_validator("nameserver")
    @classmethod
    def _nameserver(cls, value: str) -> str:
        if value and value != "none":
            host, _ = parse_host_port(value, default_port=53)
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"{value!r}: the nameserver must be an IP address") from None
        return value

    @field_validator("authserv_id")
    @classmethod
    def _authserv_id(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", value):
            raise ValueError(f"{value!r} is not a host name")
        return value

    def nameserver_address(self, outbound: OutboundConfig) -> tuple[str, int] | str | None:
        """``(host, port)`` to ask, None for the system resolver, or ``"none"``."""
        if self.nameserver == "none":
            return "none"
        if self.nameserver:
            return parse_host_port(self.nameserver, default_port=53)
        return outbound.nameserver()


def parse_host_port(value: str, *, default_port: int) -> tuple[str, int]:
    """``"127.0.0.1"``, ``"127.0.0.1:5353"`` or ``"[::1]:5353"`` → ``(host, port)``."""
    host, port_text = value, ""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    if not host:
        raise ValueError(f"{value!r} is not host or host:port")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{value!r}: the port must be 1-65535")
    return host, int(port_text)


class ForwardingConfig(_Section):
    """Forwarding at the border (SPEC §5, §8a; issue 20; docs/security.md "Relay,
    amplification and backscatter")."""

    #: Forwards to remote destinations per forwarding address per hour (sliding), shared
    #: by every node: what submission allows one account (``submission.
    #: account_messages_per_hour``).  Over it the forward is not queued and the message
    #: stays in the inbox, whatever keep-copy says.  0 = no limit.
    remote_messages_per_hour: int = Field(default=100, ge=0)
    #: Remote recipients of those forwards per address per hour (a forward to 3 remote
    #: destinations counts 3), like ``submission.account_recipients_per_hour``.
    remote_recipients_per_hour: int = Field(default=300, ge=0)
    #: Hosted addresses one message reaches through forwarding at most (Postfix
    #: ``virtual_alias_expansion_limit``); past it, addresses keep their copy and forward
    #: no further.
    max_expansion: int = Field(default=100, ge=1, le=10_000)
    #: Refuse a remote destination whose domain does not exist (NXDOMAIN, or a null MX,
    #: RFC 7505) when it is saved, asking ``outbound.dns_nameserver`` (the resolver mail
    #: is routed with).  When DNS cannot answer, the destination is accepted.
    check_destination_domains: bool = True
    #: Total time one check may take (all destinations at once); then it is accepted.
    dns_timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    @model_validator(mode="after")
    def _a_full_forward_fits(self) -> ForwardingConfig:
        """A message forwarded to every destination must fit an hour's quota."""
        limit = self.remote_recipients_per_hour
        if 0 < limit < 3:
            raise ValueError("remote_recipients_per_hour must be 0 or at least 3 "
                             "(the destinations of one address)")
        return self


class SrsConfig(_Section):
    secret: SecretStr = SecretStr("")
    domain: str = ""
    max_age_days: int = Field(default=21, ge=1)
    #: Bounces relayed through one SRS address per hour (sliding, every node); more get
    #: ``450 4.7.1`` at RCPT (issue 20: an SRS address is no relay).  0 = no limit.
    returns_per_address_per_hour: int = Field(default=20, ge=0)
    #: Bounces to SRS addresses accepted from one client IP per hour (IPv6: per /64).
    returns_per_ip_per_hour: int = Field(default=100, ge=0)
    #: Invalid SRS recipients (forged, expired, never emitted) one client IP may try per
    #: hour in one MX process; past it each further one closes the session
    #: (``421 4.7.0`` after the error tarpit's delay).
    invalid_per_ip_per_hour: int = Field(default=20, ge=1)


class SecurityConfig(LimitExemptions, _Section):
    """argon2id parameters (non-negotiable 6; tests may lower the cost) and the login
    guard (auth/login_guard.py): failures per (account, client) pair, per account and
    different accounts per client IP, each budget (mail protocols, portal) its own."""

    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    #: Different wrong passwords for one account from one client (IP, IPv6 /64) before
    #: that client is locked out of that account; and failures on one account from all
    #: clients together before it is locked for every client that has failed it — a
    #: client that has not failed it still signs in (SPEC §8a).  The same old password
    #: sent again counts once.
    login_max_failures: int = Field(default=5, ge=1)
    #: Different accounts failing from one client IP before that IP is locked out of
    #: every account (credential stuffing: no household fails on this many).  Attempts in
    #: flight count until they end.  ``login_ip_max_failures`` is its name before 0014.
    login_ip_max_accounts: int = Field(default=10, ge=1)
    #: The window failures are counted in, the account lock, and the first lock of a
    #: client or an IP; each further one doubles, up to ``login_max_lock_seconds``.
    login_lock_seconds: int = Field(default=900, ge=1)
    login_max_lock_seconds: int = Field(default=86400, ge=1)
    #: Growing delay after each failed login (doubles per failure, capped).
    login_base_delay_seconds: float = Field(default=0.5, ge=0)
    login_max_delay_seconds: float = Field(default=5.0, ge=0)
    #: Keys the digests of remembered wrong passwords (HMAC-SHA256), so the database
    #: alone never lets anyone test guesses against them.  Every node must use the same
    #: value; empty = generated once into ``<state_dir>/login-guard.secret``.
    login_secret: SecretStr = SecretStr("")
    #: How often each node with open mail sessions (Dovecot's IMAP, POP3) looks for
    #: changes that end them — a password changed or reissued, an address or contract
    #: suspended, terminated or deleted — made on any node (:mod:`mailplane.delivery.
    #: session_ends`).  The longest an open session outlives such a change, plus a moment.
    session_end_check_seconds: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: object) -> object:
        """``login_ip_max_failures`` (before 0014) still loads, as the new key, which
        wins when both are given."""
        if isinstance(data, dict) and "login_ip_max_failures" in data:
            data = dict(data)
            old = data.pop("login_ip_max_failures")
            data.setdefault("login_ip_max_accounts", old)
        return data
