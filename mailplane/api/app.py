"""``create_app(settings)``: the management API (SPEC §11) with its state wired once."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from sqlalchemy.orm import Session, sessionmaker

from mailplane.api.errors import (
    COMMON_ERROR_RESPONSES,
    EXTRA_ERROR_RESPONSES,
    install_error_handlers,
)
from mailplane.api.routes import (
    address_settings,
    address_status,
    addresses,
    audit,
    client_setup,
    contracts,
    keys,
    passwords,
    quarantine,
    rules,
    session,
)
from mailplane.auth.api_keys import KeyVerifier
from mailplane.auth.login_guard import LoginGuard
from mailplane.auth.passwords import PasswordHashing
from mailplane.auth.portal_login import PortalLogin
from mailplane.clock import Clock, SystemClock
from mailplane.config.settings import Settings
from mailplane.i18n import check_catalogues
from mailplane.mailstore.maildir import MaildirUsage
from mailplane.portal import mount_portal
from mailplane.storage.db import make_engine, make_session_factory


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
    )
    check_catalogues()  # a missing Japanese catalogue stops start-up, not every answer
    if session_factory is None:
        engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        session_factory = make_session_factory(engine)
    hashing = PasswordHashing(settings.security)
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.session_factory = session_factory
    app.state.hashing = hashing
    app.state.key_verifier = KeyVerifier(hashing, settings.api.key_cache_seconds)
    # Mailbox usage for the address table (SPEC §8), cached briefly per address.
    app.state.maildir_usage = MaildirUsage(settings.maildir_root, ttl_seconds=30.0)
    app.state.portal_login = PortalLogin(
        session_factory, hashing, LoginGuard.from_settings(settings, session_factory,
                                                           app.state.clock))
    for name, value in (extra_state or {}).items():
        setattr(app.state, name, value)

    install_error_handlers(app)
    app.include_router(keys.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(keys.me_router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(contracts.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(addresses.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(passwords.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(address_status.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(address_settings.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(quarantine.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(audit.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(session.router,
                       responses={**COMMON_ERROR_RESPONSES, **EXTRA_ERROR_RESPONSES})
    app.include_router(session.password_router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(client_setup.router, responses=COMMON_ERROR_RESPONSES)
    app.include_router(client_setup.discovery,
                       responses={**COMMON_ERROR_RESPONSES, **EXTRA_ERROR_RESPONSES})
    app.include_router(rules.router, responses=COMMON_ERROR_RESPONSES)

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

