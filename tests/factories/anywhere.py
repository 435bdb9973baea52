"""どこでもメール over real sockets: a whole node (``mailplane serve``) with the ``imap``
and ``webmail`` roles, its own Dovecot and PHP server on free loopback ports, stopped by
SIGTERM — the node stops them by their PID.

The node runs as the test does (root in CI): it hands the Maildirs to the ``mail`` user,
as ``make run`` as root does, so its state lives in a directory every user may pass
through (pytest's ``tmp_path`` is root's alone).  Without Dovecot (dovecot-imapd,
dovecot-auth-lua) or Roundcube (roundcube-core, roundcube-sqlite3, php-cli) the tests
skip with the reason printed — unless the run is root's, who can install them (``make
test`` does): then the missing package is a failure.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import poplib
import shutil
import signal
import smtplib
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailplane.anywhere.dovecot import PACKAGES as DOVECOT_PACKAGES
from mailplane.anywhere.roundcube import PACKAGES as ROUNDCUBE_PACKAGES
from mailplane.config.settings import load_settings
from mailplane.mailstore.folders import decode_mutf7
from tests.conftest import free_port
from tests.factories.node import Node, build_node

START_TIMEOUT = 60.0
#: Where the webmail connects from in these tests ([webmail] networks).
WEBMAIL_HOST = "127.0.0.2"


def _missing(webmail: bool) -> str | None:
    from mailplane.anywhere import dovecot, roundcube

    settings = load_settings()
    missing = dovecot.missing_parts(settings)
    if missing is not None:
        return f"{missing} (Debian: {DOVECOT_PACKAGES})"
    if webmail:
        missing = roundcube.missing_parts(settings)
        if missing is not None:
            return f"{missing} (Debian: {ROUNDCUBE_PACKAGES})"
    return None


def require_packages(*, webmail: bool = False) -> None:
    missing = _missing(webmail)
    if missing is None:
        return
    if os.geteuid() == 0:
        pytest.fail(f"{missing}: `make test` installs it (Makefile APT_PACKAGES)")
    print(f"\nどこでもメール tests skipped: {missing}")
    pytest.skip(missing)


def unverified_tls() -> ssl.SSLContext:
    """The node's self-signed certificate (no [tls] cert_file in the tests)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class Mailbox:
    address: str
    pop_account: str
    password: str
    contract: str


@dataclass
class AnywhereNode:
    """A running node with IMAP (and the webmail when asked for)."""

    node: Node
    ports: dict[str, int]
    mailboxes: list[Mailbox] = field(default_factory=list)

    # --- the management API --------------------------------------------------------

    def api(self) -> httpx.Client:
        return self.node.api()

    def create_mailbox(self, local_part: str, *, same_contract: bool = False) -> Mailbox:
        """A new address (``local_part`` and a number: unique on a shared node) under a
        contract of its own, or under the previous mailbox's contract."""
        api = self.api()
        if same_contract and self.mailboxes:
            contract = self.mailboxes[-1].contract
        else:
            contract = f"C{len(self.mailboxes) + 1:04d}"
            made = api.post("/v1/contracts", json={"customer_number": contract,
                                                   "contact_email": "owner@contact.example"})
            assert made.status_code == 201, made.text
        made = api.post(f"/v1/contracts/{contract}/addresses", json={
            "local_part": f"{local_part}{len(self.mailboxes) + 1}", "subdomain": "e06",
            "accept_terms": True})
        assert made.status_code == 201, made.text
        body = made.json()
        mailbox = Mailbox(body["address"]["address"], body["pop_account"],
                          body["initial_password"]["password"], contract)
        self.mailboxes.append(mailbox)
        self.node.settle()
        return mailbox

    def address_path(self, mailbox: Mailbox, tail: str = "") -> str:
        return f"/v1/contracts/{mailbox.contract}/addresses/{mailbox.address}{tail}"

    # --- mail in and out -------------------------------------------------------------

    def deliver(self, to: str, message: bytes, *, sender: str = "yamada@sender.example") -> None:
        """Through the node's MX, like any mail from the Internet."""
        with smtplib.SMTP("127.0.0.1", self.node.ports["mx"], timeout=30) as client:
            client.sendmail(sender, [to], message)

    def imap(self, user: str, password: str, *, tls: str = "starttls") -> imaplib.IMAP4:
        """Logged in over STARTTLS on the IMAP port, or over TLS on the IMAPS port."""
        if tls == "implicit":
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                "127.0.0.1", self.ports["imaps"], ssl_context=unverified_tls(), timeout=30)
        else:
            client = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=30)
            client.starttls(ssl_context=unverified_tls())
        client.login(user, password)
        return client

    def imap_refusal(self, user: str, password: str, *, source: str = "127.0.0.1") -> str:
        """The NO text of a refused login (fails the test if the login is accepted).
        ``source``: the client's own loopback address (the login guard counts per
        client, so tests that fail on purpose keep to an address of their own)."""
        client = _Imap4From(source, self.ports["imap"])
        client.starttls(ssl_context=unverified_tls())
        try:
            client.login(user, password)
        except imaplib.IMAP4.error as exc:
            return str(exc)
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()
        raise AssertionError(f"IMAP login of {user} was accepted")

    def imap_from(self, source: str, user: str, password: str, *,
                  client_ip: str | None = None) -> imaplib.IMAP4:
        """Logged in (STARTTLS) from the loopback address ``source``; ``client_ip``: the
        address a webmail host reports before the login, as Roundcube does (IMAP ID
        ``x-originating-ip``, RFC 2971)."""
        client = _Imap4From(source, self.ports["imap"])
        try:
            client.starttls(ssl_context=unverified_tls())
            if client_ip is not None:
                status, _ = client.xatom("ID", f'("x-originating-ip" "{client_ip}")')
                assert status == "OK"
            client.login(user, password)
        except BaseException:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()
            raise
        return client

    def imap_outcome(self, source: str, user: str, password: str, *,
                     client_ip: str | None = None) -> str:
        """``OK``, or the text of the refusal (``[AUTHENTICATIONFAILED]``,
        ``[UNAVAILABLE]`` …) of one login from ``source`` (see :meth:`imap_from`)."""
        try:
            client = self.imap_from(source, user, password, client_ip=client_ip)
        except imaplib.IMAP4.error as exc:
            return str(exc)
        client.logout()
        return "OK"

    def pop3(self, user: str, password: str, *, source: str = "127.0.0.1") -> poplib.POP3:
        client = _Pop3From(source, self.node.ports["pop3"])
        client.stls(context=unverified_tls())
        client.user(user)
        client.pass_(password)
        return client

    def folder(self, mailbox: Mailbox, name: str) -> list[Path]:
        """The files of one of the mailbox's folders (``INBOX`` or a folder name)."""
        from mailplane.mailstore.folders import folder_dir
        from mailplane.mailstore.paths import mailbox_dir

        maildir = mailbox_dir(self.node.state_dir / "mail", mailbox.address)
        root = maildir if name == "INBOX" else folder_dir(maildir, name)
        return sorted(path for sub in ("new", "cur") if (root / sub).is_dir()
                      for path in (root / sub).iterdir())

    def quarantine(self, mailbox: Mailbox) -> list[dict[str, Any]]:
        listed = self.api().get(self.address_path(mailbox, "/quarantine"))
        assert listed.status_code == 200, listed.text
        items: list[dict[str, Any]] = listed.json()["items"]
        return items

    @property
    def webmail_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['webmail']}/"

    def child_pids(self) -> dict[str, int]:
        """The node's Dovecot and PHP, by the PID files the node keeps."""
        state = self.node.state_dir
        pids: dict[str, int] = {}
        for name, path in (("dovecot", state / "dovecot" / "dovecot.node.pid"),
                           ("php", state / "webmail" / "php.node.pid")):
            with contextlib.suppress(OSError, ValueError):
                pids[name] = int(path.read_text().strip())
        return pids


class _Imap4From(imaplib.IMAP4):
    """IMAP from a chosen loopback address (``127.0.0.x``)."""

    def __init__(self, source: str, port: int) -> None:
        self._source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


class _Pop3From(poplib.POP3):
    """POP3 from a chosen loopback address."""

    def __init__(self, source: str, port: int) -> None:
        self._source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


def imap_folders(client: imaplib.IMAP4) -> dict[str, str]:
    """LIST: folder name (decoded from modified UTF-7) → its name on the wire."""
    status, lines = client.list()
    assert status == "OK"
    names: dict[str, str] = {}
    for line in lines:
        assert isinstance(line, bytes)
        wire = line.rsplit(b' "/" ', 1)[1].decode("ascii").strip('"')
        names[decode_mutf7(wire)] = wire
    return names


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as handle:
        if handle.read().rsplit(b")", 1)[1].split()[0] == b"Z":
            return False
    return True


def stop_node(anywhere: AnywhereNode) -> dict[str, int]:
    """SIGTERM the node; it stops its Dovecot and PHP by their PID.  Returns those PIDs
    (for a test to check that they are gone)."""
    pids = anywhere.child_pids()
    anywhere.node.stop(signal.SIGTERM)
    return pids


AnywhereFactory = Callable[..., AnywhereNode]


class AnywhereNodes:
    """Nodes started for one fixture, and their directories: all stopped at the end."""

    def __init__(self) -> None:
        self.made: list[AnywhereNode] = []
        self.roots: list[Path] = []

    def start(self, *, webmail: bool = False, database_url: str | None = None,
              **env_extra: Any) -> AnywhereNode:
        require_packages(webmail=webmail)
        root = Path(tempfile.mkdtemp(prefix="mailplane-anywhere-"))
        root.chmod(0o711)  # Dovecot's mail user and PHP's user pass through, as in var/
        self.roots.append(root)
        ports = {name: free_port() for name in ("imap", "imaps", "auth", "webmail")}
        env = {
            "MAILPLANE_IMAP__ENABLED": "true",
            "MAILPLANE_IMAP__PORT": str(ports["imap"]),
            "MAILPLANE_IMAP__TLS_PORT": str(ports["imaps"]),
            "MAILPLANE_IMAP__AUTH_PORT": str(ports["auth"]),
            "MAILPLANE_WEBMAIL__ENABLED": "true" if webmail else "false",
            "MAILPLANE_WEBMAIL__PORT": str(ports["webmail"]),
            "MAILPLANE_WEBMAIL__PUBLIC_URL": f"http://127.0.0.1:{ports['webmail']}/",
            "MAILPLANE_SPAM__ENGINE": "builtin",
            "MAILPLANE_VIRUS__ENGINE": "builtin",
            **{key: str(value) for key, value in env_extra.items()},
        }
        node = build_node(root, database_url, **env)
        anywhere = AnywhereNode(node, ports)
        self.made.append(anywhere)
        node.start()
        wanted = [ports["imap"], ports["imaps"]] + ([ports["webmail"]] if webmail else [])
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_listening(port) for port in wanted):
            if time.monotonic() > deadline or node.process is None or \
                    node.process.poll() is not None:
                raise RuntimeError(f"どこでもメール did not start: {node.log_text()[-4000:]}")
            time.sleep(0.1)
        return anywhere

    def close(self) -> None:
        for anywhere in self.made:
            pids = stop_node(anywhere)
            for client in anywhere.node.clients:
                client.close()
            for pid in pids.values():  # a node that failed to stop them: not left behind
                if _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
        for root in self.roots:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def anywhere_factory() -> Iterator[AnywhereFactory]:
    """Nodes of one test (they may be stopped, or configured their own way)."""
    nodes = AnywhereNodes()
    yield nodes.start
    nodes.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_imap_node(request: pytest.FixtureRequest) -> Iterator[AnywhereNode]:
    """One node per database for a module's tests (each test makes its own mailboxes,
    under a contract of their own): the login check reads the credentials from the
    database, so SQLite and PostgreSQL both."""
    nodes = AnywhereNodes()
    # Two failures lock an account for the client that made them, three failing accounts
    # an IP: the guard tests need no more of Dovecot's growing failure delays than that.
    # Changes that end open sessions are looked for twice a second.
    limits = {"MAILPLANE_SECURITY__LOGIN_MAX_FAILURES": "2",
              "MAILPLANE_SECURITY__LOGIN_IP_MAX_ACCOUNTS": "3",
              "MAILPLANE_SECURITY__SESSION_END_CHECK_SECONDS": "0.5",
              "MAILPLANE_WEBMAIL__NETWORKS": f'["{WEBMAIL_HOST}/32"]'}
    if request.param == "sqlite":
        try:
            yield nodes.start(**limits)
        finally:
            nodes.close()
        return
    from tests.conftest import throwaway_pg_database

    with throwaway_pg_database() as url:
        try:
            yield nodes.start(database_url=url, **limits)
        finally:
            nodes.close()
