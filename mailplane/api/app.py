"""``create_app(settings)``: the management API (SPEC §11) with its state wired once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailplane.api.admission import Admission, AdmissionMiddleware
from mailplane.api.codes import Codes
from mailplane.api.errors import (
    COMMON_ERROR_RESPONSES,
    EXTRA_ERROR_RESPONSES,
    install_error_handlers,
)
from mailplane.api.hashing import BoundedHashing
from mailplane.api.idempotency import ReplayStore, replay_secret
from mailplane.api.routes import (
    account,
    address_filters,
    address_settings,
    address_status,
    addresses,
    audit,
    client_setup,
    contracts,
    keys,
    mta_sts,
    passwords,
    quarantine,
    recovery,
    rules,
    session,
)
from mailplane.api.security_headers import SecurityHeadersMiddleware
from mailplane.api.unicode_input import reject_invalid_unicode
from mailplane.auth.account_codes import code_key
from mailplane.auth.api_keys import KeyVerifier
from mailplane.auth.login_guard import LoginGuard
from mailplane.auth.portal_login import PortalLogin
from mailplane.clock import Clock, SystemClock
from mailplane.config.settings import Settings
from mailplane.i18n import check_catalogues
from mailplane.mailstore.maildir import MaildirUsage
from mailplane.portal import mount_portal
from mailplane.storage.db import make_engine, make_session_factory


def api_engine(settings: Settings) -> Engine:
    """The API's own connection pool: two connections for each of its
    ``api.max_concurrent_requests`` turns (a quarantine call holds two), and none shared
    with the mail services, so an API flood can never starve POP3 logins or delivery."""
    turns = settings.api.max_concurrent_requests
    return make_engine(settings.database_url, pool_size=turns, max_overflow=turns)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    session_factory: sessionmaker[Session] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="mailplane management API",
        version="1",
        description="Contracts, addresses and every per-address mail setting (SPEC §11).",
        # Every JSON body's text is valid Unicode, or 422 (issue 20).
        dependencies=[Depends(reject_invalid_unicode)],
    )
    check_catalogues()  # a missing Japanese catalogue stops start-up, not every answer
    app.state.engine = None
    if session_factory is None:
        app.state.engine = api_engine(settings)
        session_factory = make_session_factory(app.state.engine)
    hashing = BoundedHashing(settings.security,
                             max_concurrent=settings.api.max_concurrent_hashing,
                             wait_seconds=settings.api.queue_timeout_seconds)
    admission = Admission(settings.api)
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.session_factory = session_factory
    app.state.hashing = hashing
    app.state.admission = admission
    app.state.key_verifier = KeyVerifier(hashing)
    app.state.replays = ReplayStore(replay_secret(settings),
                                    timedelta(hours=settings.api.idempotency_hours))
    # One-time account codes are digested with a key of their own from the same secret.
    app.state.codes = Codes(settings, code_key(replay_secret(settings)))
    # Mailbox usage (inbox + quarantine) for the address table (SPEC §8), cached briefly.
    app.state.maildir_usage = MaildirUsage(settings.maildir_root, settings.quarantine_root,
                                           ttl_seconds=30.0)
    app.state.portal_login = PortalLogin(
        session_factory, hashing, LoginGuard.from_settings(settings, session_factory,
                                                           app.state.clock))
    for name, value in (extra_state or {}).items():
        setattr(app.state, name, value)

    # Added last = runs first: headers on every answer, including the refusals below.
    app.add_middleware(AdmissionMiddleware, admission=admission)
    app.add_middleware(SecurityHeadersMiddleware)
    install_error_handlers(app)
    app.include_router(keys.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(keys.me_router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(contracts.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(addresses.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(passwords.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(address_status.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(address_filters.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(address_settings.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(quarantine.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(audit.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(session.router,
                       responses={**COMMON_ERROR_RESPONSES, **EXTRA_ERROR_RESPONSES})
    app.include_router(session.password_router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(account.router,
                       responses={**COMMON_ERROR_RESPONSES, **EXTRA_ERROR_RESPONSES})
    app.include_router(recovery.router,
                       responses={**COMMON_ERROR_RESPONSES, **EXTRA_ERROR_RESPONSES})
    app.include_router(client_setup.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(client_setup.discovery,
                       responses={**COMMON_ERROR_RESPONSES, **EXTRA_ERROR_RESPONSES})
    app.include_router(rules.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(mta_sts.router, responses=COMMON_ERROR_RESPONSES)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str | int]:
        """Liveness; on a node that also runs mail services, the policy revision its SMTP
        decisions use right now (so an operator — or a test — can see a change arrive)."""
        body: dict[str, str | int] = {"status": "ok"}
        policy = getattr(app.state, "policy_cache", None)
        if policy is not None:
            body["policy_revision"] = policy.snapshot.revision
        return body

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from mailplane import metrics as metrics_module

        return PlainTextResponse(
            generate_latest(metrics_module.REGISTRY), media_type=CONTENT_TYPE_LATEST
        )

    mount_portal(app)
    return app

