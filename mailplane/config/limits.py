"""The limits under abuse every listener shares (SPEC §8a), as settings fields.

Each listener section (``[mx]``, ``[submission]``, ``[pop3]``, ``[api]``) inherits
:class:`ListenerLimits`, so the keys are the same everywhere and each section only changes
defaults.  The SMTP listeners add :class:`SmtpErrorLimits` (Postfix's
``smtpd_error_sleep_time`` / ``smtpd_soft_error_limit`` / ``smtpd_hard_error_limit``).
Every limit is answered with a temporary refusal (``421 4.7.0``, ``-ERR [SYS/TEMP]``,
HTTP 503) and counted in ``mailplane_limit_refusals_total`` (docs/security.md).
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The stdlib MIME parser and serialiser recurse once or more per nesting level: the
#: virus report's parse, neutralise and re-serialise work to about 200 levels inside the
#: default recursion limit; every walker stops at this depth (mail/mime.py).
MIME_DEPTH_CEILING = 150
#: Parts every walker accepts at most (a per-part virus scan is one engine call each).
MIME_PARTS_CEILING = 5000


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenerLimits(_Fields):
    """Connections of one listener, for the whole node (the ``mx.workers`` MX processes
    share one count, mailplane/net/anvil.py), like Postfix's process limit and anvil's
    ``smtpd_client_connection_count_limit`` and ``smtpd_client_connection_rate_limit``."""

    #: Sessions at once on this listener; one more is answered at once and closed.
    max_connections: int = Field(default=1000, ge=1)
    #: Sessions at once from one client IP (an IPv6 client: its /64).
    max_connections_per_ip: int = Field(default=50, ge=1)
    #: New connections per client IP per minute; 0 = no rate limit.
    connections_per_ip_per_minute: int = Field(default=0, ge=0)
    #: Seconds a client has to introduce itself (SMTP: HELO/EHLO; POP3: log in; API: send
    #: its first request) before the session is closed.
    greeting_deadline_seconds: float = Field(default=30.0, gt=0)
    #: Once this share of ``max_connections`` is in use the listener is under pressure:
    #: idle sessions get ``pressure_idle_timeout_seconds`` instead of their usual timeout.
    pressure_threshold: float = Field(default=0.8, gt=0, le=1)
    pressure_idle_timeout_seconds: float = Field(default=10.0, gt=0)
    #: listen(2) backlog: connections the kernel queues before the process accepts them
    #: (capped by net.core.somaxconn).
    listen_backlog: int = Field(default=1024, ge=1, le=65535)


class SmtpErrorLimits(_Fields):
    """Error tarpitting per SMTP session (Postfix ``smtpd_*_error_limit``): after
    ``soft_error_limit`` 4xx/5xx replies each further error reply waits
    ``error_sleep_seconds`` times the errors above the soft limit (capped by
    ``max_error_sleep_seconds``); at ``hard_error_limit`` the session gets ``421 4.7.0``
    and is closed.  A delivered message resets the count.  RCPTs past the per-message
    recipient limit are answered ``452 4.5.3`` and, up to ``recipient_overshoot_limit`` of
    them in a session, do not count (Postfix's ``smtpd_recipient_overshoot_limit``): a
    client with 1,000 recipients gets the first 100 delivered, then sends the rest."""

    error_sleep_seconds: float = Field(default=1.0, ge=0)
    max_error_sleep_seconds: float = Field(default=10.0, ge=0)
    soft_error_limit: int = Field(default=10, ge=0)
    hard_error_limit: int = Field(default=20, ge=1)
    recipient_overshoot_limit: int = Field(default=1000, ge=0)

    @model_validator(mode="after")
    def _soft_below_hard(self) -> SmtpErrorLimits:
        if self.soft_error_limit >= self.hard_error_limit:
            raise ValueError("soft_error_limit must be below hard_error_limit")
        return self


def check_networks(value: list[str]) -> list[str]:
    """Each entry must be a CIDR network (config is data: refused at start-up)."""
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not a network: {exc}") from exc
    return value


class LimitExemptions(_Fields):
    """Networks whose clients the per-IP connection limits, the per-IP submission quotas
    and the login guard's per-IP lock do not apply to (the ISP's own webmail or relay
    hosts, which sign every customer in from one address).  Login failures per account
    and per (account, client), and per-account quotas, still apply."""

    limit_exempt_networks: list[str] = Field(default_factory=list)

    @field_validator("limit_exempt_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return check_networks(value)
