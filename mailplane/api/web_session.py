"""Portal sessions (SPEC §10): a random id in an HttpOnly, SameSite=Strict cookie (Secure
over https), of which the database keeps only the SHA-256; an idle and an absolute timeout;
and a CSRF token every state-changing request made with the cookie must echo in
``X-CSRF-Token``.

The CSRF token is derived from the session id (a keyed hash, "HMAC-based synchronizer
token", OWASP CSRF cheat sheet): the page gets it from ``GET /v1/session`` — readable only
by same-origin script — while a forged cross-site request can send the cookie but cannot
know the token.  Nothing about it is stored, so it cannot leak from the database.

A session lives only as long as what it signed in with (issue 20): it carries a stamp of
the password hash it signed in with — the contract's for a contract holder, the address's
for a mailbox user (:func:`~mailplane.auth.portal_login.credential_stamp`).  Every request
reads the session with the current hashes and status in one statement, so a password
changed or reissued by the portal, the API or the CLI, or a suspended contract or address,
ends it at its next request on every node — no cache anywhere.  The session that changed
its own password is restamped (:func:`keep_own_session`).  The holder of a suspended
contract may sign in again and look; every change is refused
(:func:`mailplane.api.deps.writable_contract`).

A session is a :class:`~mailplane.auth.api_keys.Principal` like a customer bearer key
(role ``customer``, its contract, and the address for a mailbox user), so the scope rules
of :mod:`mailplane.api.deps` stay one set.  Bearer-key requests need no CSRF token: a
browser never adds an ``Authorization`` header to a cross-site request by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from mailplane.api.errors import ApiError
from mailplane.api.language import SESSION_COOKIE
from mailplane.auth.api_keys import Principal
from mailplane.auth.portal_login import credential_stamp
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.storage import web_sessions_repo
from mailplane.storage.web_sessions_repo import SessionRow

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``last_seen_at`` is written at most this often (not on every request).
TOUCH_EVERY = timedelta(seconds=60)
#: Longest cookie value worth hashing.
MAX_TOKEN_LENGTH = 128


def new_token() -> str:
    return secrets.token_urlsafe(32)


def id_hash(token: str) -> str:
    return hashlib.sha256(b"mailplane-session\0" + token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    digest = hashlib.sha256(b"mailplane-csrf\0" + token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class LiveSession:
    row: SessionRow
    token: str

    @property
    def principal(self) -> Principal:
        return Principal(key_id=f"session-{self.row.id_hash[:12]}", role="customer",
                         contract_id=self.row.contract_id, address_id=self.row.address_id)


class SessionExpired(Exception):
    pass


def idle_limit(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.portal.session_idle_minutes)


def still_valid(row: SessionRow) -> bool:
    """The password the session signed in with — the contract's for a contract holder,
    the address's for a mailbox user — is still the stored one; a contract holder's
    contract is in the state it was in at sign-in (suspended or resumed since: ended); a
    mailbox user's address and contract are active."""
    if row.address_id is None:
        return row.contract_stamp == credential_stamp(row.contract_password_hash,
                                                      active=row.contract_active)
    return row.contract_active and row.address_active and row.address_stamp == \
        credential_stamp(row.address_password_hash)


def _load(factory: sessionmaker[Session], token: str, now: datetime,
          idle: timedelta) -> SessionRow | None:
    """The live session for ``token``; an expired one is deleted and reported.  Blocking."""
    with factory() as session:
        row = web_sessions_repo.get(session, id_hash=id_hash(token))
        if row is None:
            return None
        if now >= row.expires_at or now - row.last_seen_at >= idle or not still_valid(row):
            web_sessions_repo.end(session, id_hash=row.id_hash)
            session.commit()
            raise SessionExpired
        if now - row.last_seen_at >= TOUCH_EVERY:
            web_sessions_repo.touch(session, id_hash=row.id_hash, now=now)
            session.commit()
        return row


async def current_session(request: Request) -> LiveSession | None:
    """The request's live session, or None without a cookie.  Raises 401
    ``session_expired`` for an unknown or expired one."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    if len(token) > MAX_TOKEN_LENGTH:
        raise _expired()
    state = request.app.state
    clock: Clock = state.clock
    settings: Settings = state.settings
    try:
        row = await run_in_threadpool(_load, state.session_factory, token, clock.now(),
                                      idle_limit(settings))
    except SessionExpired:
        raise _expired() from None
    if row is None:
        raise _expired()
    return LiveSession(row, token)


def _expired() -> ApiError:
    return ApiError(401, "session_expired",
                    "your session has ended; sign in again", headers={})


def check_csrf(request: Request, live: LiveSession) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(live.token).encode()):
        raise ApiError(403, "csrf",
                       "the request did not carry this session's CSRF token; reload the page")


async def session_principal(request: Request) -> Principal | None:
    """The principal of a portal session (CSRF checked), or None without a cookie."""
    live = await current_session(request)
    if live is None:
        return None
    check_csrf(request, live)
    request.state.portal_session = live
    return live.principal


def keep_own_session(request: Request, session: Session, *, old_hash: str | None,
                     new_hash: str) -> None:
    """After a password change in ``session``'s transaction (``old_hash`` → ``new_hash``):
    if the request came from a portal session signed in under the old hash, stamp it
    with the new one, so whoever changed the password stays signed in while every other
    session under that password ends.  Blocking."""
    live: LiveSession | None = getattr(request.state, "portal_session", None)
    if live is None:
        return
    web_sessions_repo.restamp(session, id_hash=live.row.id_hash,
                              old_stamp=credential_stamp(old_hash),
                              new_stamp=credential_stamp(new_hash))


def set_cookie(response: Response, request: Request, token: str, settings: Settings) -> None:
    mode = settings.portal.cookie_secure
    secure = mode == "always" or (mode == "auto" and request.url.scheme == "https")
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/",
        max_age=settings.portal.session_absolute_hours * 3600,
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
