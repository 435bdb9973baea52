"""どこでもメール, the webmail (SPEC §9b): Roundcube from Debian (``roundcube-core``), in
Japanese, over the IMAP of :mod:`~mailplane.anywhere.dovecot` and mailplane's submission.

Roundcube reads everything from IMAP (INBOX, 迷惑メール — the quarantine —, 送信済み) and
sends through submission with the customer's own credentials, so every submission check
applies — sender ownership, the virus check, the sending quotas — except the overseas
window, which is for the customer's own mail program (001 L4645-4647): the webmail hosts'
addresses are ``[webmail] networks`` (:mod:`mailplane.filters.overseas_window`).  What it
sends is kept in 送信済み.  Sign-in is the address or the POP account with the POP
password, checked by mailplane (the ``mailplane`` plugin, ``roundcube/plugin/``).

:func:`render_config` writes ``config.inc.php`` both for the node's own webmail
(:class:`NodeWebmail`: PHP's built-in server on ``[webmail] host:port``, its state under
``<state_dir>/webmail/``) and for Roundcube under its own service units
(``mailplane webmail-config``, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mailplane.anywhere.children import Child, NodeProgram
from mailplane.anywhere.dovecot import write_private
from mailplane.config.settings import Settings
from mailplane.mailstore.folders import DRAFTS, QUARANTINE, SENT, TRASH, encode_mutf7
from mailplane.storage.state_dir import secret_file

#: Files shipped with mailplane: the sign-in plugin and the built-in server's router.
PACKAGED = Path(__file__).resolve().parent / "roundcube"
#: Where Debian keeps Roundcube's defaults (upstream: ``<roundcube>/config/``).
DEBIAN_CONFIG = Path("/etc/roundcube")
PACKAGES = "roundcube-core roundcube-sqlite3 php-cli"
#: The unprivileged user PHP runs as when the node is root.
PHP_USER = "www-data"


def _php(value: str | int | bool | list[str]) -> str:
    """A PHP literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_php(item) for item in value) + "]"
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def missing_parts(settings: Settings) -> str | None:
    """Why this machine cannot serve the webmail, or None."""
    roundcube = Path(settings.webmail.roundcube_dir)
    if not (roundcube / "program" / "include" / "iniset.php").exists():
        return f"Roundcube is not installed in {roundcube}"
    if _defaults(roundcube) is None:
        return "Roundcube's defaults.inc.php is missing"
    if shutil.which(settings.webmail.php_binary) is None:
        return f"{settings.webmail.php_binary} is not installed"
    return None


def _defaults(roundcube: Path) -> Path | None:
    for candidate in (DEBIAN_CONFIG / "defaults.inc.php",
                      roundcube / "config" / "defaults.inc.php"):
        if candidate.exists():
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class WebmailPlaces:
    """Where the node's own Roundcube keeps its state."""

    database: str
    temp_dir: Path
    log_dir: Path
    des_key: str


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def render_config(settings: Settings, places: WebmailPlaces | None, *, imap_host: str,
                  smtp_host: str, verify_tls: bool, login_check_secret: str) -> str:
    """Roundcube's ``config.inc.php`` for どこでもメール; without ``places`` the part to
    include from a packaged Roundcube's own configuration (its database, key and
    directories stay its own)."""
    webmail = settings.webmail
    imap = settings.imap
    socket_options: dict[str, str] = {}
    if webmail.source_address:
        socket_options["bindto"] = f"{_host(webmail.source_address)}:0"
    ssl = ("['verify_peer' => true, 'verify_peer_name' => true]" if verify_tls else
           "['verify_peer' => false, 'verify_peer_name' => false, 'allow_self_signed' => true]")
    connection = (f"['ssl' => {ssl}"
                  + (f", 'socket' => ['bindto' => {_php(socket_options['bindto'])}]"
                     if socket_options else "") + "]")
    folders = {"drafts_mbox": DRAFTS, "sent_mbox": SENT, "junk_mbox": QUARANTINE,
               "trash_mbox": TRASH}
    own: list[tuple[str, str]] = [] if places is None else [
        ("db_dsnw", _php(places.database)),
        ("des_key", _php(places.des_key)),
        ("temp_dir", _php(str(places.temp_dir) + "/")),
        ("log_dir", _php(str(places.log_dir) + "/")),
        ("log_driver", _php("file")),
    ]
    values: list[tuple[str, str]] = [
        *own,
        ("imap_host", _php(imap_host)),
        ("imap_conn_options", connection),
        ("smtp_host", _php(smtp_host)),
        ("smtp_user", _php("%u")),
        ("smtp_pass", _php("%p")),
        ("smtp_conn_options", connection),
        # Whose login it relays: submission counts the browser's address in the login
        # guard, not the webmail host's (XCLIENT, offered to [webmail] networks over TLS).
        ("smtp_xclient_addr", _php(True)),
        ("smtp_helo_host", _php("webmail." + settings.base_domains[0])),
        ("product_name", _php(webmail.product_name)),
        ("support_url", _php("")),
        ("plugins", _php(["mailplane"])),
        ("skin", _php("elastic")),
        ("language", _php("ja_JP")),
        ("timezone", _php(settings.timezone)),
        ("enable_spellcheck", _php(False)),
        ("enable_installer", _php(False)),
        ("login_lc", _php(2)),
        ("login_autocomplete", _php(0)),
        ("session_lifetime", _php(webmail.session_minutes)),
        ("ip_check", _php(True)),
        ("useragent", _php("mailplane webmail")),  # ASCII, no version
        ("identities_level", _php(3)),  # one identity; its address is the signed-in one
        ("create_default_folders", _php(False)),  # Dovecot creates them (auto = subscribe)
        ("protect_default_folders", _php(True)),
        ("show_real_foldernames", _php(False)),
        ("default_folders", _php(["INBOX", *(encode_mutf7(name) for name in folders.values())])),
        *((key, _php(encode_mutf7(name))) for key, name in folders.items()),
        ("mailplane_login_check_url",
         _php(f"http://{_host(imap.auth_host)}:{imap.auth_port}/v1/login")),
        ("mailplane_login_check_secret", _php(login_check_secret)),
    ]
    body = "".join(f"$config[{_php(key)}] = {value};\n" for key, value in values)
    return ("<?php\n// Written by mailplane (mailplane/anywhere/roundcube.py): どこでもメール.\n"
            "$config = [];\n" + body)


PUBLIC_INDEX = """<?php
// mailplane: Roundcube's public entry point, with this tree as its install path.
define('INSTALL_PATH', {install_path});
include {index};
"""


class NodeWebmail(NodeProgram):
    """The node's own どこでもメール (``[webmail] run_php``): Roundcube from the system
    package, served by PHP's built-in server, stopped by its PID."""

    def __init__(self, settings: Settings, *, login_check_secret: str) -> None:
        self._settings = settings
        self._secret = login_check_secret
        self.root = settings.state_dir.absolute() / "webmail"
        self.install = self.root / "roundcube"

    # --- the tree Roundcube runs from -------------------------------------------------

    def _link(self, target: Path, link: Path) -> None:
        if link.is_symlink() or link.exists():
            if link.is_symlink() and os.readlink(link) == str(target):
                return
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            else:
                link.unlink()
        link.symlink_to(target)

    def _build_tree(self) -> None:
        """``<state_dir>/webmail/roundcube`` = Roundcube's install path: links to the
        package, our plugin, our configuration and entry point."""
        roundcube = Path(self._settings.webmail.roundcube_dir)
        install = self.install
        for directory in (self.root, install, install / "config", install / "plugins",
                          install / "skins", install / "public_html",
                          install / "public_html" / "program", self.root / "temp",
                          self.root / "logs"):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in ("program", "SQL"):
            self._link(roundcube / name, install / name)
        for skin in (roundcube / "skins").iterdir():
            self._link(skin, install / "skins" / skin.name)
        for plugin in (roundcube / "plugins").iterdir():
            self._link(plugin, install / "plugins" / plugin.name)
        ours = install / "plugins" / "mailplane"
        if ours.is_symlink():
            ours.unlink()
        shutil.copytree(PACKAGED / "plugin" / "mailplane", ours, dirs_exist_ok=True)
        defaults = _defaults(roundcube)
        assert defaults is not None
        self._link(defaults, install / "config" / "defaults.inc.php")
        mimetypes = defaults.parent / "mimetypes.php"
        if mimetypes.exists():
            self._link(mimetypes, install / "config" / "mimetypes.php")
        public = install / "public_html"
        self._link(Path("../skins"), public / "skins")
        self._link(Path("../plugins"), public / "plugins")
        self._link(Path("../../program/js"), public / "program" / "js")
        self._link(Path("../../program/resources"), public / "program" / "resources")
        (public / "index.php").write_text(PUBLIC_INDEX.format(
            install_path=_php(str(install) + "/"), index=_php(str(roundcube / "index.php"))))
        shutil.copyfile(PACKAGED / "router.php", install / "router.php")

    def _database(self) -> Path:
        """Roundcube's own SQLite database (its sessions, preferences, contacts), made
        from the package's schema the first time."""
        path = self.root / "roundcube.db"
        if not path.exists():
            schema = Path(self._settings.webmail.roundcube_dir) / "SQL" / "sqlite.initial.sql"
            fresh = path.with_name(".roundcube.db.new")
            fresh.unlink(missing_ok=True)
            connection = sqlite3.connect(fresh)
            try:
                connection.executescript(schema.read_text(encoding="utf-8"))
                connection.commit()
            finally:
                connection.close()
            os.chmod(fresh, 0o600)
            os.replace(fresh, path)
        return path

    def _owner(self) -> tuple[int, int] | None:
        """PHP's user when the node is root (www-data); None: the node's own user."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(PHP_USER)
        except KeyError:
            entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid

    def _prepare(self) -> list[str]:
        """Write the tree and the configuration (blocking); returns the command line."""
        settings = self._settings
        self._build_tree()
        database = self._database()
        imap = settings.imap
        places = WebmailPlaces(
            database=f"sqlite:///{database}?mode=0600",
            temp_dir=self.root / "temp", log_dir=self.root / "logs",
            des_key=secret_file(self.root / "des.key", nbytes=18)[:24])
        config = render_config(
            settings, places, imap_host=f"{_host(imap.host)}:{imap.port}",
            smtp_host=f"ssl://{_host(settings.submission.host)}:"
                      f"{settings.submission.tls_port}",
            verify_tls=bool(settings.tls.cert_file), login_check_secret=self._secret)
        write_private(self.install / "config" / "config.inc.php", config)
        owner = self._owner()
        if owner is not None:
            # PHP runs as its own user; the state directory lets it pass (the node).
            for directory, _, files in os.walk(self.root):
                os.chown(directory, *owner, follow_symlinks=False)
                for name in files:
                    os.chown(os.path.join(directory, name), *owner, follow_symlinks=False)
        webmail = settings.webmail
        return [
            webmail.php_binary, "-S", f"{_host(webmail.host)}:{webmail.port}",
            "-t", str(self.install / "public_html"),
            "-d", "display_errors=0", "-d", "log_errors=1",
            "-d", f"error_log={self.root / 'logs' / 'php.log'}",
            "-d", "expose_php=0", "-d", "memory_limit=256M",
            "-d", f"upload_max_filesize={settings.mx.max_message_size // 1024 // 1024}M",
            "-d", f"post_max_size={settings.mx.max_message_size // 1024 // 1024 + 5}M",
            "-d", f"date.timezone={settings.timezone}",
            str(self.install / "router.php"),
        ]

    async def start(self) -> None:
        argv = await asyncio.to_thread(self._prepare)
        webmail = self._settings.webmail
        owner = self._owner()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "PHP_CLI_SERVER_WORKERS": str(webmail.php_workers)}
        self._child = Child(
            "webmail (php)", argv, log_path=self.root / "logs" / "server.log",
            pid_path=self.root / "php.node.pid", listens=[(webmail.host, webmail.port)],
            env=env, cwd=self.install,
            user=None if owner is None else owner[0],
            group=None if owner is None else owner[1])
        await self._child.start()


def write_unit_config(settings: Settings, directory: Path, *, secret: str) -> list[Path]:
    """``mailplane webmail-config``: for Roundcube from the Debian package under php-fpm
    (production): ``mailplane.inc.php`` to include at the end of
    /etc/roundcube/config.inc.php, and the sign-in plugin in ``plugins/mailplane`` to link
    into Roundcube's plugin directory.  IMAP (STARTTLS) and submission (implicit TLS, so
    Roundcube's XCLIENT comes inside TLS) by their public names, the certificate checked.
    Blocking; returns what was written."""
    public = settings.public
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    fragment = directory / "mailplane.inc.php"
    imap_host = public.imap_host or settings.imap.host
    text = render_config(
        settings, None, imap_host=f"tls://{_host(imap_host)}:{public.imap_port}",
        smtp_host=f"ssl://{_host(public.smtp_host)}:{public.submission_tls_port}",
        verify_tls=True, login_check_secret=secret)
    write_private(fragment, text.replace("$config = [];\n", ""), mode=0o640)
    plugin = directory / "plugins" / "mailplane"
    shutil.copytree(PACKAGED / "plugin" / "mailplane", plugin, dirs_exist_ok=True)
    return [fragment, plugin]
