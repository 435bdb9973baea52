"""The submission listeners' protocol: aiosmtpd's SMTP with an *awaited* credential check
and per-peer TLS rules (RFC 4954 AUTH PLAIN/LOGIN, RFC 3207 STARTTLS, RFC 8314 implicit
TLS).

aiosmtpd 1.4.6 calls its authenticator synchronously, so :class:`SubmissionSMTP` lets
aiosmtpd parse the exchange and then *awaits* the shared
:class:`~mailplane.auth.credentials.Authenticator` (argon2 in a thread, under the
brute-force guard).  ``submission.allow_plain_auth_on_loopback`` lifts the TLS
requirement for loopback peers only (development).

The webmail hosts (``[webmail] networks``) log in for their users, so their address is no
client's: they may say whose login they relay with Postfix's ``XCLIENT ADDR=`` (Roundcube's
``smtp_xclient_addr``), over TLS and before AUTH, and the login guard then counts the
browser's address (:mod:`mailplane.auth.login_guard`).  Only the login guard hears it:
the overseas window, the per-IP quotas and the Received line keep the connection's peer,
which is what those rules are about (001 L4645-4647: the webmail is not the customer's
own mail program).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax
from aiosmtpd.smtp import Session as SmtpSession

from mailplane.auth.credentials import Authenticator, AuthOutcome
from mailplane.net.limits import Network, in_networks
from mailplane.smtp import replies
from mailplane.smtp.base import MailplaneSMTP
from mailplane.smtp.replies import SmtpReply

LISTENER = "submission"
#: Marks an aiosmtpd-parsed credential that still has to be verified (see SubmissionSMTP).
_PARSED = "mailplane:parsed-credentials"

_AUTH_REFUSALS: dict[AuthOutcome, SmtpReply] = {
    AuthOutcome.BAD_CREDENTIALS: replies.AUTH_BAD_CREDENTIALS,
    AuthOutcome.SUSPENDED: replies.AUTH_SUSPENDED,
    AuthOutcome.LOCKED: replies.AUTH_LOCKED,
    AuthOutcome.UNAVAILABLE: replies.AUTH_UNAVAILABLE,
}


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """What a successful AUTH leaves on the session (never the password)."""

    address: str
    pop_account: str


def peer_ip_of(session: SmtpSession | None) -> str:
    peer = session.peer if session is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


_XTEXT = re.compile(r"\+([0-9A-F]{2})")


def xclient_address(value: str) -> str | None:
    """The client address an ``XCLIENT ADDR=`` value names (xtext, RFC 3461 §4: ``1.2.3.4``,
    ``IPV6:2001:db8::1``), None for ``[UNAVAILABLE]``/``[TEMPUNAVAIL]``; ValueError for
    anything else."""
    text = _XTEXT.sub(lambda match: chr(int(match[1], 16)), value)
    if text.upper() in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
        return None
    if text[:5].upper() == "IPV6:":
        return str(ipaddress.IPv6Address(text[5:]))
    return str(ipaddress.IPv4Address(text))


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class SubmissionSMTP(MailplaneSMTP):
    """aiosmtpd's SMTP with an *awaited* credential check and per-peer TLS requirements.

    aiosmtpd reads ``_auth_require_tls`` and ``require_starttls`` as plain attributes set
    in ``__init__``, before the peer is known; here they are properties evaluated per
    connection: implicit TLS already satisfies "TLS before AUTH", and the development
    loopback exception applies only to loopback peers.
    """

    def __init__(
        self,
        handler: Any,  # the submission handler (aiosmtpd calls its hooks by name)
        *,
        credentials: Authenticator,
        implicit_tls: bool,
        allow_plain_auth_on_loopback: bool,
        relay_networks: tuple[Network, ...] = (),
        **kwargs: Any,
    ) -> None:
        # Set before super().__init__, which introspects (and so reads) the properties.
        self._credentials = credentials
        self._relay_networks = relay_networks
        #: The client a webmail host said it logs in for (``XCLIENT ADDR``).
        self._relayed_client: str | None = None
        self._relayed = False
        self._implicit_tls = implicit_tls
        self._loopback_exception_allowed = allow_plain_auth_on_loopback
        self._tls_wanted_for_auth = True
        self._starttls_wanted = False
        super().__init__(handler, **kwargs)

    def _loopback_exception(self) -> bool:
        session = getattr(self, "session", None)
        return self._loopback_exception_allowed and _is_loopback(peer_ip_of(session))

    @property
    def _auth_require_tls(self) -> bool:
        if self._implicit_tls or self._loopback_exception():
            return False
        return self._tls_wanted_for_auth

    @_auth_require_tls.setter
    def _auth_require_tls(self, value: bool) -> None:
        self._tls_wanted_for_auth = bool(value)

    @property
    def require_starttls(self) -> bool:
        return self._starttls_wanted and not self._loopback_exception()

    @require_starttls.setter
    def require_starttls(self, value: object) -> None:
        self._starttls_wanted = bool(value)

    # --- XCLIENT (the webmail hosts) -----------------------------------------------

    @property
    def offers_xclient(self) -> bool:
        """To a webmail host, over TLS, before AUTH (EHLO then lists ``XCLIENT ADDR``)."""
        session = self.session
        return (bool(self._relay_networks) and session is not None
                and not session.authenticated and self.tls_in_use
                and in_networks(peer_ip_of(session), self._relay_networks))

    @property
    def client_ip(self) -> str:
        """Whom the login guard counts: the relayed client, else the peer."""
        return self._relayed_client or peer_ip_of(self.session)

    @syntax("XCLIENT ADDR=address")
    async def smtp_XCLIENT(self, arg: str | None) -> None:
        """Postfix's XCLIENT, ``ADDR`` only: the session starts again (``220``, then
        EHLO) as the client's; anyone but a webmail host over TLS is refused."""
        if not self.offers_xclient:
            await self.push("550 5.7.0 Error: insufficient authorization")
            return
        relayed: str | None = None
        attributes = (arg or "").split()
        try:
            if not attributes:
                raise ValueError("no attribute")
            for attribute in attributes:
                name, equals, value = attribute.partition("=")
                if name.upper() != "ADDR" or not equals:
                    raise ValueError(name)
                relayed = xclient_address(value)
        except ValueError:
            await self.push("501 5.5.4 Syntax: XCLIENT ADDR=address")
            return
        self._relayed_client = relayed
        self._relayed = True
        assert self.session is not None
        stock: Any = self  # untyped in aiosmtpd
        stock._set_rset_state()
        self.session.host_name = None
        self.session.extended_smtp = False
        await self.push(f"220 {self.hostname} {self.__ident__}")

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        """After XCLIENT Roundcube (PEAR Net_SMTP) greets with HELO and goes on with
        the extensions its first EHLO listed — AUTH among them — as Postfix, XCLIENT's
        author, allows: that HELO keeps the session extended."""
        await super().smtp_HELO(hostname)
        if self._relayed and self.session is not None and self.session.host_name:
            self.session.extended_smtp = True

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # Called synchronously by aiosmtpd's auth_PLAIN/auth_LOGIN once the exchange is
        # parsed: hand the credentials back so our async overrides can await the check.
        return AuthResult(success=False, handled=False, message=_PARSED, auth_data=auth_data)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_PLAIN(server, args))

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._verify(await super().auth_LOGIN(server, args))

    async def _verify(self, parsed: AuthResult) -> AuthResult:
        if parsed.message != _PARSED or not isinstance(parsed.auth_data, LoginPassword):
            return parsed  # aiosmtpd already answered (bad base64, '*' abort, …)
        try:
            username = parsed.auth_data.login.decode("utf-8")
            password = parsed.auth_data.password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False,
                              message=replies.AUTH_BAD_CREDENTIALS.line)
        result = await self._credentials.authenticate(
            username, password, peer_ip=self.client_ip, listener=LISTENER
        )
        if result.ok and result.address and result.pop_account:
            user = AuthenticatedUser(result.address, result.pop_account)
            return AuthResult(success=True, auth_data=user)
        refusal = _AUTH_REFUSALS.get(result.outcome, replies.AUTH_BAD_CREDENTIALS)
        return AuthResult(success=False, handled=False, message=refusal.line)
