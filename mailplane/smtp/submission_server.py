"""The two submission listeners (SPEC §1; RFC 6409): STARTTLS on
``submission.starttls_port`` (RFC 3207 — nothing but EHLO/STARTTLS/NOOP/QUIT before TLS)
and implicit TLS on ``submission.tls_port`` (RFC 8314), one gate and one handler
(:mod:`mailplane.smtp.submission`) for both."""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref

from aiosmtpd.smtp import SMTP
from sqlalchemy.orm import Session, sessionmaker

from mailplane.auth.credentials import Authenticator
from mailplane.auth.send_quota import SendQuota
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.local import LocalDelivery
from mailplane.filters.engines.base import SpamEngine, VirusEngine
from mailplane.filters.geo import CountryLookup, build_country_lookup
from mailplane.filters.scan import Scanner
from mailplane.mail.srs import srs_from_settings
from mailplane.net.gate import Gate, GatedServer, start_gated_server
from mailplane.net.limits import parse_networks
from mailplane.net.tls import server_ssl_context
from mailplane.policy.model import PolicySource
from mailplane.smtp.base import (
    SHUTDOWN_GRACE_SECONDS,
    close_gracefully,
    listener_gate,
)
from mailplane.smtp.protocol import protocol_description
from mailplane.smtp.submission import LISTENER, SubmissionHandler
from mailplane.smtp.submission_protocol import SubmissionSMTP

log = logging.getLogger(__name__)


class SubmissionServer:
    """The two running submission listeners on the current event loop."""

    def __init__(
        self,
        starttls: GatedServer,
        implicit_tls: GatedServer,
        handler: SubmissionHandler,
        protocols: weakref.WeakSet[SMTP],
        *,
        owns_delivery: bool,
    ) -> None:
        self._owns_delivery = owns_delivery
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self.handler = handler
        self._protocols = protocols

    @property
    def starttls_port(self) -> int:
        return self._starttls.port

    @property
    def tls_port(self) -> int:
        return self._implicit_tls.port

    async def aclose(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Graceful stop, like the MX: in-flight DATA finishes, idle sessions get 421."""
        await close_gracefully([self._starttls, self._implicit_tls], self._protocols,
                               grace_seconds=grace_seconds)
        if self._owns_delivery:
            await self.handler.delivery.aclose()


async def start_submission(
    settings: Settings,
    session_factory: sessionmaker[Session],
    policy_cache: PolicySource,
    clock: Clock,
    *,
    authenticator: Authenticator,
    delivery: LocalDelivery | None = None,
    virus_engine: VirusEngine | None = None,
    spam_engine: SpamEngine | None = None,
    country_lookup: CountryLookup | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> SubmissionServer:
    """Listen on ``submission.starttls_port`` and ``submission.tls_port`` (0 = any free port)
    inside the running loop.

    ``delivery`` is the node's :class:`LocalDelivery` (shared with the MX and the queue);
    without one a private one is built from the given engines and closed with the
    listeners.
    ``country_lookup`` defaults to :func:`mailplane.filters.geo.build_country_lookup`, and
    ``ssl_context`` to :func:`mailplane.net.tls.server_ssl_context` (self-signed if none set).
    """
    loop = asyncio.get_running_loop()
    if ssl_context is None:
        ssl_context = await asyncio.to_thread(server_ssl_context, settings)
    if country_lookup is None:
        country_lookup = await asyncio.to_thread(build_country_lookup, settings.overseas)
    owns_delivery = delivery is None
    if delivery is None:
        delivery = LocalDelivery(
            settings, session_factory, clock,
            scanner=Scanner(virus_engine, spam_engine, virus=settings.virus,
                            spam=settings.spam),
            srs=srs_from_settings(settings, clock),
            policy=policy_cache)
    quota = SendQuota(session_factory, clock, settings.submission,
                      exempt_networks=settings.security.limit_exempt_networks)
    handler = SubmissionHandler(settings, policy_cache, clock, country_lookup=country_lookup,
                                delivery=delivery, quota=quota)
    protocols: weakref.WeakSet[SMTP] = weakref.WeakSet()
    context = ssl_context
    # One listener, two sockets: one limiter; the TLS port handshakes after admission.
    plain_gate, session_limits = listener_gate(LISTENER, settings.submission, settings,
                                               protocols)
    tls_gate = Gate(plain_gate.limiter, plain_gate.refusal_line, tls=context,
                    handshake_timeout=plain_gate.handshake_timeout)

    relay_networks = parse_networks(settings.webmail.networks)

    def factory(*, implicit_tls: bool) -> SMTP:
        protocol = SubmissionSMTP(
            handler,
            session_limits=session_limits,
            limiter=plain_gate.limiter,
            credentials=authenticator,
            implicit_tls=implicit_tls,
            allow_plain_auth_on_loopback=settings.submission.allow_plain_auth_on_loopback,
            relay_networks=relay_networks,
            data_size_limit=settings.mx.max_message_size,
            enable_SMTPUTF8=True,
            hostname=settings.mx.hostname,
            ident="mailplane",
            tls_context=None if implicit_tls else context,
            require_starttls=not implicit_tls,
            auth_required=True,
            auth_require_tls=True,
            loop=loop,
        )
        protocol.normalise_bare_lf = settings.mx.bare_newline == "normalize"
        protocols.add(protocol)
        return protocol

    host = settings.submission.host
    backlog = settings.submission.listen_backlog
    starttls = await start_gated_server(
        lambda: factory(implicit_tls=False), listener=LISTENER, host=host,
        port=settings.submission.starttls_port, gate=plain_gate, backlog=backlog)
    try:
        implicit = await start_gated_server(
            lambda: factory(implicit_tls=True), listener=LISTENER, host=host,
            port=settings.submission.tls_port, gate=tls_gate, backlog=backlog)
    except BaseException:
        starttls.close()
        raise
    server = SubmissionServer(starttls, implicit, handler, protocols,
                              owns_delivery=owns_delivery)
    log.info("submission listening on %s:%d (STARTTLS) and %s:%d (TLS); country lookup %s;"
             " protocol: %s", host, server.starttls_port, host, server.tls_port,
             country_lookup.name, protocol_description())
    return server
