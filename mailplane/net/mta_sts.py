"""The MTA-STS policy of our domains (RFC 8461) and the TXT record announcing it.

Senders that support MTA-STS fetch ``https://mta-sts.<domain>/.well-known/mta-sts.txt``
(served by the API, ``api/routes/mta_sts.py``), then deliver only over TLS with a valid
certificate to an MX the policy lists (``enforce``), or deliver anyway and report
failures by TLS-RPT (``testing``, RFC 8460).  Every base domain has the same policy: they
share the MX hosts.  Its ``id`` (in ``_mta-sts.<domain>`` TXT) is derived from the policy
text, so it changes exactly when the policy does, on every node alike (§3.1: senders
refetch when the id changes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mailplane.config.settings import Settings

POLICY_PATH = "/.well-known/mta-sts.txt"
HOST_PREFIX = "mta-sts."


def mx_hosts(settings: Settings) -> list[str]:
    """The MX host names of every base domain: ``[public] mx_hosts`` or this node's."""
    return list(settings.public.mx_hosts) or [settings.mx.hostname]


def policy_text(settings: Settings) -> str:
    """The policy file (§3.2): CRLF-separated ``key: value`` lines."""
    lines = ["version: STSv1", f"mode: {settings.mta_sts.mode}"]
    lines += [f"mx: {host}" for host in mx_hosts(settings)]
    lines.append(f"max_age: {settings.mta_sts.max_age_seconds}")
    return "\r\n".join(lines) + "\r\n"


def policy_id(settings: Settings) -> str:
    """1-32 alphanumeric characters (§3.1), from the policy's SHA-256."""
    return hashlib.sha256(policy_text(settings).encode("ascii")).hexdigest()[:20]


def txt_value(settings: Settings) -> str:
    return f"v=STSv1; id={policy_id(settings)}"


def policy_domain(host: str, base_domains: Sequence[str]) -> str | None:
    """The domain whose policy ``Host: mta-sts.<domain>`` asks for, if it is a base
    domain or a (customer) subdomain of one; None otherwise."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("["):
        return None
    host = host.rpartition(":")[0] if ":" in host else host
    if not host.startswith(HOST_PREFIX):
        return None
    domain = host[len(HOST_PREFIX):]
    for base in base_domains:
        if domain == base or domain.endswith("." + base):
            return domain
    return None
