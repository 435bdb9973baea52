"""Ending the open IMAP sessions of an address (SPEC §9b): ``doveadm kick`` on the Dovecot
of this node, for each address :class:`~mailplane.delivery.session_ends.SessionEnds`
hands over — its password changed or reissued, it or its contract suspended, terminated
or deleted, on any node.

``doveadm kick`` asks Dovecot's anvil (which counts every logged-in session by user and
IP) for the processes serving the user and sends them SIGTERM; Dovecot's ``imap`` answers
``* BYE Server shutting down.`` and closes, and the client's next login meets the login
check with the change in force.  It runs with an empty configuration and the anvil
socket named (``-c /dev/null kick -a <socket>``), so it needs nothing of Dovecot's own
configuration (its TLS key), only the socket — which Dovecot's configuration
(:func:`~mailplane.anywhere.dovecot.render_config`) gives to the mail owner, the user the
node runs as in production — and the right to signal the ``imap`` processes, which run as
that same user.  Why this and not Dovecot's doveadm HTTP API: docs/architecture.md, "IMAP
and webmail".
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from mailplane.config.settings import Settings
from mailplane.net.throttled_log import ThrottledLog

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: doveadm's exit status when no session matched (``EX_NOUSER``-like
#: ``DOVEADM_EX_NOTFOUND``): nothing was open, nothing to do.
NOT_FOUND = 68
#: A kick that does not answer in this long is given up (anvil answers in milliseconds).
KICK_TIMEOUT_SECONDS = 10.0
#: Debian's Dovecot keeps its sockets here (``base_dir``).
DEBIAN_ANVIL = Path("/run/dovecot/anvil")


def anvil_socket(settings: Settings, node_base_dir: Path | None) -> Path:
    """``[imap] anvil_socket``, else the node's own Dovecot's, else Debian's."""
    if settings.imap.anvil_socket:
        return Path(settings.imap.anvil_socket)
    if node_base_dir is not None:
        return node_base_dir / "anvil"
    return DEBIAN_ANVIL


def _kickable(address: str) -> bool:
    """doveadm reads its argument as a wildcard mask or an option: an address mailplane
    issued has neither ``*``, ``?`` nor a leading ``-``, and anything else is not ours."""
    return bool(address) and "@" in address and not address.startswith("-") and not any(
        c in address for c in "*?\0\n\t ")


class DovecotSessions:
    """Ends IMAP sessions by user with this node's doveadm and Dovecot's anvil socket."""

    def __init__(self, doveadm: str, anvil: Path) -> None:
        self._doveadm = doveadm
        self._anvil = anvil

    def argv(self, address: str) -> list[str]:
        return [self._doveadm, "-c", "/dev/null", "kick", "-a", str(self._anvil), address]

    async def kick(self, address: str) -> bool:
        """End ``address``'s sessions; True if there were any."""
        if not _kickable(address):
            log.warning("not kicking %r: not an address mailplane issued", address)
            return False
        process = await asyncio.create_subprocess_exec(
            *self.argv(address), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            _out, err = await asyncio.wait_for(process.communicate(), KICK_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            _throttled.error(("timeout",), "doveadm kick %s did not answer in %.0f s",
                             address, KICK_TIMEOUT_SECONDS)
            return False
        if process.returncode == 0:
            log.info("ended the open IMAP sessions of %s", address)
            return True
        if process.returncode != NOT_FOUND:
            _throttled.error(("failed", process.returncode),
                             "doveadm kick %s failed (status %s): %s", address,
                             process.returncode, err.decode("utf-8", "replace").strip())
        return False

    async def end(self, addresses: frozenset[str]) -> None:
        for address in sorted(addresses):
            await self.kick(address)
