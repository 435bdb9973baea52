"""The node's どこでもメール roles (SPEC §9b): ``imap`` — the login check, and the node's
own Dovecot where ``[imap] run_dovecot`` — and ``webmail`` — Roundcube under PHP's
built-in server where ``[webmail] run_php``.

A machine without the Debian packages serves the rest: one log line says what is missing
(``make run`` installs them when run as root).  The external programs are stopped by their
PID when the node stops (:mod:`mailplane.anywhere.children`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.mailstore import owner
from mailplane.policy.model import PolicySource
from mailplane.storage.state_dir import private_dir

if TYPE_CHECKING:
    from mailplane.delivery.session_ends import SessionEnds

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]


def configure_mail_owner(settings: Settings) -> bool:
    """A root node hands the mail tree to ``[imap] mail_owner`` (Dovecot never serves
    mail as root); a node running as a service user owns its mail itself.  True when the
    tree is handed over."""
    if os.geteuid() != 0 or not settings.imap.enabled:
        owner.configure(None)
        return False
    try:
        owner.configure(settings.imap.mail_owner)
    except KeyError:
        log.warning("imap.mail_owner %r is not a system user: mail stays root's and IMAP "
                    "cannot serve it", settings.imap.mail_owner)
        return False
    return True


def prepare_state_dir(settings: Settings) -> None:
    """The state directory is the service user's alone (issue 15).  A root node that
    hands the mail to Dovecot's user, or runs PHP as its own user, lets those pass through
    it to what they own below — never list it."""
    handed_over = configure_mail_owner(settings)
    php_user = os.geteuid() == 0 and settings.webmail.enabled and settings.webmail.run_php
    private_dir(settings.state_dir, traversable=handed_over or php_user)


async def _no_wait(_seconds: float) -> None:
    """Dovecot delays failed logins itself, without holding an auth worker."""


def _end_imap_sessions(settings: Settings, session_ends: SessionEnds | None,
                       base_dir: Path | None) -> None:
    """Kick the open IMAP sessions of a changed address on the Dovecot beside this node:
    its own (``base_dir``), or the one under its own unit (Debian's socket, or ``[imap]
    anvil_socket``)."""
    from mailplane.anywhere.sessions import DovecotSessions, anvil_socket

    if session_ends is None:
        return
    if not Path(settings.imap.doveadm_binary).exists():
        log.warning("open IMAP sessions will not end on a password change or suspension: "
                    "%s is not installed", settings.imap.doveadm_binary)
        return
    kicker = DovecotSessions(settings.imap.doveadm_binary, anvil_socket(settings, base_dir))
    session_ends.subscribe("imap", kicker.end)


async def start_imap(settings: Settings, session_factory: sessionmaker[Session],
                     policy: PolicySource, clock: Clock,
                     tasks: list[asyncio.Task[None]], *,
                     session_ends: SessionEnds | None = None) -> list[Closer]:
    from mailplane.anywhere.children import ChildFailed
    from mailplane.anywhere.dovecot import PACKAGES, NodeDovecot, missing_parts
    from mailplane.anywhere.login_check import LoginCheck, login_check_app, login_check_secret
    from mailplane.auth.credentials import Authenticator
    from mailplane.auth.login_guard import MAIL, LoginGuard
    from mailplane.auth.passwords import PasswordHashing
    from mailplane.net.tls import ensure_certificate
    from mailplane.node.bootstrap import _EmbeddedUvicorn

    imap = settings.imap
    secret = await asyncio.to_thread(login_check_secret, settings)
    # Dovecot makes the mailboxes of addresses that got no mail yet: the mail root is
    # the mail owner's (and so is what an older run left there as root).
    await asyncio.to_thread(owner.make_dirs, settings.maildir_root)
    await asyncio.to_thread(owner.adopt_tree, settings.maildir_root)
    # IMAP and the webmail count in the mail budget POP3 and submission share (a family's
    # phones failing over IMAP never lock the contract holder's portal sign-in).
    guard = LoginGuard.from_settings(settings, session_factory, clock, sleep=_no_wait)
    check = LoginCheck(settings, Authenticator(session_factory,
                                               PasswordHashing(settings.security), guard,
                                               budget=MAIL),
                       policy, clock)
    config = uvicorn.Config(login_check_app(check, secret), host=imap.auth_host,
                            port=imap.auth_port, log_level="warning", lifespan="off",
                            timeout_keep_alive=5,
                            limit_concurrency=4 * imap.max_concurrent_checks)
    server = _EmbeddedUvicorn(config, listen_backlog=128)
    serving = asyncio.create_task(server.serve(), name="imap-login-check")
    tasks.append(serving)
    log.info("IMAP login check listening on http://%s:%d", imap.auth_host, imap.auth_port)

    async def stop_check() -> None:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(serving), 10)

    closers: list[Closer] = [stop_check]
    if not imap.run_dovecot:
        _end_imap_sessions(settings, session_ends, None)
        return closers
    missing = missing_parts(settings)
    if missing is not None:
        log.warning("IMAP not served: %s (apt-get install %s; make run does as root)",
                    missing, PACKAGES)
        return closers
    cert, key = await asyncio.to_thread(ensure_certificate, settings)
    dovecot = NodeDovecot(settings, secret=secret, cert=cert, key=key)
    try:
        await dovecot.start()
    except (ChildFailed, OSError) as exc:
        log.error("IMAP not served: Dovecot did not start: %s", exc)
        return closers
    log.info("IMAP listening on %s:%d (STARTTLS) and %d (TLS), Dovecot pid %s", imap.host,
             imap.port, imap.tls_port, dovecot.pid)
    closers.append(dovecot.stop)
    _end_imap_sessions(settings, session_ends, dovecot.layout.base_dir)
    return closers


async def start_webmail(settings: Settings) -> list[Closer]:
    from mailplane.anywhere.children import ChildFailed
    from mailplane.anywhere.login_check import login_check_secret
    from mailplane.anywhere.roundcube import PACKAGES, NodeWebmail, missing_parts

    if not settings.webmail.run_php:
        return []
    missing = missing_parts(settings)
    if missing is not None:
        log.warning("webmail (どこでもメール) not served: %s (apt-get install %s; make run "
                    "does as root)", missing, PACKAGES)
        return []
    secret = await asyncio.to_thread(login_check_secret, settings)
    webmail = NodeWebmail(settings, login_check_secret=secret)
    try:
        await webmail.start()
    except (ChildFailed, OSError) as exc:
        log.error("webmail not served: PHP did not start: %s", exc)
        return []
    log.info("webmail (どこでもメール) on http://%s:%d/, PHP pid %s", settings.webmail.host,
             settings.webmail.port, webmail.pid)
    return [webmail.stop]
