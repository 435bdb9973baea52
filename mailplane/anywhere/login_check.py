"""The login check of どこでもメール (SPEC §9b): Dovecot's passdb and the webmail's sign-in
ask mailplane whether a user name and password may log in.

The answer is the check POP3 and submission use (:class:`~mailplane.auth.credentials.
Authenticator`, listener ``imap`` or ``webmail``): the credential read from the database
at that moment — a password change or reissue applies to the very next login, a suspended
or terminated address or contract is refused — under the login guard, counted against the
client's own address (Dovecot passes the IP it saw, or the browser's address the webmail
reported, ``login_trusted_networks``).  No copy of the credentials exists anywhere that
could lag.  The user name is the address or the POP account, as for POP3; the answer
names the address, which Dovecot then uses as the user.

Wire (HTTP/1.1 on a loopback or internal address, never a public one): ``POST /v1/login``
with ``Authorization: Bearer <[imap] auth_secret>`` and a form body ``user``,
``password``, ``ip``, ``service`` (``imap`` | ``webmail``).  The answer is ``text/plain``:
the outcome on the first line, then ``key=value`` lines for Dovecot:

``ok``           ``user=`` the address, ``userdb_home=`` its Maildir, ``userdb_quota_rule=``
``fail``         wrong password or unknown user (one outcome: nothing tells them apart)
``disabled``     right password, but the address or its contract is suspended/terminated
``locked``       too many failures from this client for now (``retry_after=`` seconds)
``unavailable``  the database cannot be read; try again

The check never sleeps: Dovecot delays failures itself (``auth_failure_delay`` and its
per-IP penalty) without holding an auth worker, and the webmail answers its own page.
Checks at once are bounded (``[imap] max_concurrent_checks``); a request that cannot get
a turn within ``auth_timeout_seconds`` is ``unavailable``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mailplane.auth.credentials import Authenticator, AuthOutcome
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.mailstore.paths import mailbox_dir
from mailplane.policy.model import PolicySource
from mailplane.storage.state_dir import secret_file

log = logging.getLogger(__name__)

#: The longest request body read (a user name, a password of at most a few hundred
#: characters, an IP, a service name).
MAX_BODY_BYTES = 4096
#: Longest password worth a check (POP passwords are at most 32 characters).
MAX_PASSWORD_CHARS = 1024
SERVICES = ("imap", "webmail")

Outcome = Literal["ok", "fail", "disabled", "locked", "unavailable"]
_OUTCOMES: dict[AuthOutcome, Outcome] = {
    AuthOutcome.OK: "ok",
    AuthOutcome.BAD_CREDENTIALS: "fail",
    AuthOutcome.SUSPENDED: "disabled",
    AuthOutcome.LOCKED: "locked",
    AuthOutcome.UNAVAILABLE: "unavailable",
}


@dataclass(frozen=True, slots=True)
class LoginAnswer:
    outcome: Outcome
    fields: tuple[tuple[str, str], ...] = ()

    def text(self) -> str:
        return "".join([f"{self.outcome}\n", *(f"{k}={v}\n" for k, v in self.fields)])


class LoginCheck:
    """One check: the credential, the guard, and what Dovecot needs to open the mailbox."""

    def __init__(self, settings: Settings, authenticator: Authenticator,
                 policy: PolicySource, clock: Clock) -> None:
        self._settings = settings
        self._authenticator = authenticator
        self._policy = policy
        self._clock = clock
        self._turns = asyncio.Semaphore(settings.imap.max_concurrent_checks)

    async def check(self, *, user: str, password: str, ip: str, service: str) -> LoginAnswer:
        try:
            await asyncio.wait_for(self._turns.acquire(),
                                   self._settings.imap.auth_timeout_seconds)
        except TimeoutError:
            log.warning("%s login check: no turn within %.0f s", service,
                        self._settings.imap.auth_timeout_seconds)
            return LoginAnswer("unavailable")
        try:
            result = await self._authenticator.authenticate(user, password, peer_ip=ip,
                                                            listener=service)
        finally:
            self._turns.release()
        outcome = _OUTCOMES[result.outcome]
        if outcome == "locked":
            until = result.locked_until
            seconds = max(1, int((until - self._clock.now()).total_seconds())) if until else 60
            return LoginAnswer("locked", (("retry_after", str(seconds)),))
        if outcome != "ok" or result.address is None:
            return LoginAnswer(outcome if outcome != "ok" else "fail")
        address = result.address
        fields = [("user", address),
                  ("userdb_home",
                   str(mailbox_dir(self._settings.maildir_root.absolute(), address)))]
        policy = self._policy.snapshot.lookup(address)
        if policy is not None:
            fields.append(("userdb_quota_rule", f"*:storage={policy.quota_bytes}B"))
        return LoginAnswer("ok", tuple(fields))


def login_check_secret(settings: Settings) -> str:
    """``[imap] auth_secret``, or one generated once into ``<state_dir>/imap-auth.secret``
    (mode 600; several nodes configure one value instead)."""
    configured = settings.imap.auth_secret.get_secret_value()
    return configured or secret_file(settings.state_dir / "imap-auth.secret")


def _form(body: bytes) -> dict[str, str] | None:
    try:
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=8, errors="replace")
    except (UnicodeError, ValueError):
        return None
    if any(len(values) != 1 for values in parsed.values()):
        return None
    return {key: values[0] for key, values in parsed.items()}


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return False
    return True


def login_check_app(check: LoginCheck, secret: str) -> Starlette:
    """The ASGI app of the check (the node serves it with uvicorn on ``[imap] auth_*``)."""
    expected = f"Bearer {secret}".encode()

    async def login(request: Request) -> Response:
        given = request.headers.get("authorization", "").encode("latin-1", "replace")
        if not hmac.compare_digest(given, expected):
            return PlainTextResponse("unauthorized\n", status_code=401)
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            return PlainTextResponse("body too large or without a length\n", status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                return PlainTextResponse("body too large\n", status_code=413)
        form = _form(bytes(body))
        if form is None or set(form) != {"user", "password", "ip", "service"}:
            return PlainTextResponse("bad request\n", status_code=400)
        if (form["service"] not in SERVICES or not _valid_ip(form["ip"])
                or len(form["password"]) > MAX_PASSWORD_CHARS):
            return PlainTextResponse("bad request\n", status_code=400)
        answer = await check.check(user=form["user"], password=form["password"],
                                   ip=form["ip"].split("%", 1)[0], service=form["service"])
        return PlainTextResponse(answer.text(), headers={"Cache-Control": "no-store"})

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/v1/login", login, methods=["POST"]),
                             Route("/healthz", health, methods=["GET"])])
