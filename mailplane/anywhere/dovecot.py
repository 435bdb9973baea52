"""Dovecot for どこでもメール's IMAP (SPEC §9b): its configuration, and on one machine the
node's own Dovecot.

Dovecot (Debian ``dovecot-imapd``, IMAP4rev1 + IDLE, STARTTLS and implicit TLS) serves the
Maildirs mailplane writes.  Its passdb is a Lua script (Debian ``dovecot-auth-lua``) that
asks mailplane's login check (:mod:`~mailplane.anywhere.login_check`) with Dovecot's own
HTTP client, and the answer's ``userdb_*`` fields are the userdb (``prefetch``): nothing
about users is configured or exported on Dovecot's side.  Why this and not a passdb on the
database, or Dovecot's auth policy server: docs/architecture.md, "IMAP and webmail".

The folders: INBOX is the Maildir itself; 迷惑メール is the address's quarantine
(:mod:`mailplane.delivery.quarantine`) and expunges what is older than
``retention.quarantine_days`` by itself too; 送信済み, 下書き and ゴミ箱 are where the
webmail keeps its mail.  Names are UTF-8 here and modified UTF-7 on the wire and on disk.
The quota plugin bounds what clients may store (APPEND, COPY) by the address's quota, in
every folder; the MX counts the same folders, 迷惑メール included (issue 20: quarantined
mail counts against the quota), so both see one figure.

:func:`render_config` writes the configuration both for the node's own Dovecot
(:class:`NodeDovecot`, ``[imap] run_dovecot``) and for a Dovecot under its own service
unit (``mailplane imap-config``, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from mailplane.anywhere.children import Child, NodeProgram
from mailplane.config.settings import Settings
from mailplane.mailstore.folders import DRAFTS, QUARANTINE, SENT, TRASH
from mailplane.mailstore.owner import mail_uid_gid

#: Debian's packages for each part Dovecot needs here.
IMAP_BINARY = Path("/usr/lib/dovecot/imap")
LUA_MODULE = Path("/usr/lib/dovecot/modules/auth/libauthdb_lua.so")
DH_PARAMETERS = Path("/usr/share/dovecot/dh.pem")
PACKAGES = "dovecot-imapd dovecot-auth-lua"


def missing_parts(settings: Settings) -> str | None:
    """Why this machine cannot run Dovecot for IMAP, or None."""
    if not Path(settings.imap.dovecot_binary).exists():
        return f"{settings.imap.dovecot_binary} is not installed"
    if not IMAP_BINARY.exists():
        return f"{IMAP_BINARY} is not installed"
    if not LUA_MODULE.exists():
        return f"{LUA_MODULE} is not installed"
    if os.geteuid() == 0:
        for user in ("dovenull", "dovecot"):  # Debian's, made by dovecot-core
            try:
                pwd.getpwnam(user)
                grp.getgrnam(user)
            except KeyError:
                return f"the system user {user} is missing"
    return None


@dataclass(frozen=True, slots=True)
class DovecotLayout:
    """Where one Dovecot keeps its files."""

    config: Path
    lua: Path
    #: ``None``: Dovecot's defaults (/run/dovecot, /var/lib/dovecot, syslog).
    base_dir: Path | None = None
    state_dir: Path | None = None
    log: Path | None = None


@dataclass(frozen=True, slots=True)
class Accounts:
    """The system users Dovecot runs as and serves the mail as."""

    mail_uid: int
    mail_gid: int
    login_user: str
    internal_user: str
    internal_group: str
    #: Dovecot starts as root (and chroots its login processes); else it runs as one user.
    privileged: bool = True


def accounts() -> Accounts:
    """As root: Debian's ``dovenull``/``dovecot`` and the mail tree's owner; otherwise
    everything as the user running mailplane (Dovecot runs unprivileged then)."""
    uid, gid = mail_uid_gid()
    if os.geteuid() == 0:
        return Accounts(uid, gid, "dovenull", "dovecot", "dovecot")
    me = pwd.getpwuid(os.geteuid()).pw_name
    return Accounts(uid, gid, me, me, grp.getgrgid(os.getegid()).gr_name, privileged=False)


def _lua_string(value: str) -> str:
    """A Lua string literal (long-bracket form, which escapes nothing)."""
    level = 0
    while f"]{'=' * level}]" in value:
        level += 1
    return f"[{'=' * level}[{value}]{'=' * level}]"


LUA_SCRIPT = """\
-- Written by mailplane (mailplane/anywhere/dovecot.py): every IMAP login is checked by
-- mailplane's login check, with the credential as it is in the database right now.
local url = {url}
local authorization = {authorization}
local client = nil

function script_init()
  client = dovecot.http.client({{timeout = {timeout_ms}, max_attempts = 1,
                                 user_agent = "dovecot-mailplane"}})
  return 0
end

local function escape(value)
  return (tostring(value or ""):gsub("[^%w%-_%.~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

function auth_password_verify(request, password)
  local call = client:request({{url = url, method = "POST"}})
  call:add_header("Authorization", authorization)
  call:add_header("Content-Type", "application/x-www-form-urlencoded")
  call:set_payload("user=" .. escape(request.user) .. "&password=" .. escape(password) ..
                   "&ip=" .. escape(request.rip) .. "&service=imap")
  local response = call:submit()
  if response:status() ~= 200 then
    return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE,
           "login check answered " .. response:status()
  end
  local outcome = nil
  local fields = {{}}
  for line in response:payload():gmatch("[^\\n]+") do
    if outcome == nil then
      outcome = line
    else
      local key, value = line:match("^([%w_]+)=(.*)$")
      if key ~= nil then fields[key] = value end
    end
  end
  if outcome == "ok" then
    return dovecot.auth.PASSDB_RESULT_OK, fields
  elseif outcome == "fail" then
    return dovecot.auth.PASSDB_RESULT_PASSWORD_MISMATCH, ""
  elseif outcome == "disabled" then
    return dovecot.auth.PASSDB_RESULT_OK,
           {{nologin = "y", reason = "Account suspended; see My Page"}}
  end
  return dovecot.auth.PASSDB_RESULT_INTERNAL_FAILURE, "login check: " .. tostring(outcome)
end
"""


def render_lua(settings: Settings, secret: str) -> str:
    imap = settings.imap
    host = f"[{imap.auth_host}]" if ":" in imap.auth_host else imap.auth_host
    return LUA_SCRIPT.format(
        url=_lua_string(f"http://{host}:{imap.auth_port}/v1/login"),
        authorization=_lua_string(f"Bearer {secret}"),
        timeout_ms=int(imap.auth_timeout_seconds * 1000) + 2000,
    )


def _mailbox(name: str, special_use: str, extra: str = "") -> str:
    return (f"  mailbox \"{name}\" {{\n    special_use = {special_use}\n"
            f"    auto = subscribe\n{extra}  }}\n")


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def render_config(settings: Settings, layout: DovecotLayout, users: Accounts, *,
                  cert: Path, key: Path) -> str:
    """dovecot.conf for the IMAP of どこでもメール (Dovecot 2.3)."""
    imap = settings.imap
    unprivileged = not users.privileged
    owner = _user_name(users.mail_uid) if users.privileged else None
    lines = [
        "# Written by mailplane (mailplane/anywhere/dovecot.py). Logins are checked by",
        "# mailplane; the folders are mailplane's Maildir folders (docs/operations.md).",
    ]
    if layout.base_dir is not None:
        lines.append(f"base_dir = {layout.base_dir}")
    if layout.state_dir is not None:
        lines.append(f"state_dir = {layout.state_dir}")
    if layout.log is not None:
        lines += [f"log_path = {layout.log}", f"info_log_path = {layout.log}"]
    trusted = " ".join(settings.webmail.networks)
    lines += [
        "protocols = imap",
        f"listen = {imap.host}",
        "ssl = yes",
        f"ssl_cert = <{cert}",
        f"ssl_key = <{key}",
        "ssl_min_protocol = TLSv1.2",
    ]
    if DH_PARAMETERS.exists():
        lines.append(f"ssl_dh = <{DH_PARAMETERS}")
    lines += [
        # Passwords only over TLS, except from loopback and the webmail hosts.
        "disable_plaintext_auth = yes",
        "auth_mechanisms = plain login",
        "auth_username_format = %Lu",
        # Every login asks mailplane: a cache would let an old password in after a change.
        "auth_cache_size = 0",
        "auth_failure_delay = 2 secs",
        f"login_trusted_networks = {trusted}",
        "login_greeting = mailplane IMAP ready.",
        f"default_login_user = {users.login_user}",
        f"default_internal_user = {users.internal_user}",
        f"default_internal_group = {users.internal_group}",
        f"first_valid_uid = {users.mail_uid}",
        f"last_valid_uid = {users.mail_uid}",
        f"first_valid_gid = {users.mail_gid}",
        f"last_valid_gid = {users.mail_gid}",
        f"mail_uid = {users.mail_uid}",
        f"mail_gid = {users.mail_gid}",
        "mail_location = maildir:~" + (f":INDEX={imap.index_dir}/%d/%n"
                                       if imap.index_dir else ""),
        "mail_plugins = $mail_plugins quota",
        "maildir_copy_with_hardlinks = yes",
        *(["# The Maildirs are on a volume several nodes share (NFS): no mmap, fsync",
            "# always, and attribute caches flushed around each access.",
            "mmap_disable = yes", "mail_fsync = always", "mail_nfs_storage = yes"]
          if imap.index_dir else []),
        "namespace inbox {",
        "  inbox = yes",
        "  separator = /",
        _mailbox(QUARANTINE, "\\Junk",
                 f"    autoexpunge = {settings.retention.quarantine_days}d\n").rstrip("\n"),
        _mailbox(SENT, "\\Sent").rstrip("\n"),
        _mailbox(DRAFTS, "\\Drafts").rstrip("\n"),
        _mailbox(TRASH, "\\Trash").rstrip("\n"),
        "}",
        "passdb {",
        "  driver = lua",
        f"  args = file={layout.lua} blocking=yes",
        "}",
        "userdb {",
        "  driver = prefetch",
        "}",
        # What clients store (APPEND, COPY) is bounded by the address's quota in every
        # folder, 迷惑メール too, and no message is larger than the MX would take.
        "plugin {",
        "  quota = count:User quota",
        "  quota_vsizes = yes",
        f"  quota_max_mail_size = {settings.mx.max_message_size}B",
        "}",
        "protocol imap {",
        "  mail_plugins = $mail_plugins imap_quota",
        f"  mail_max_userip_connections = {imap.max_connections_per_user_ip}",
        "}",
        "service imap-login {",
        *(["  chroot ="] if unprivileged else []),
        "  inet_listener imap {",
        f"    address = {imap.host}",
        f"    port = {imap.port}",
        "  }",
        "  inet_listener imaps {",
        f"    address = {imap.host}",
        f"    port = {imap.tls_port}",
        "    ssl = yes",
        "  }",
        "}",
        # Anvil knows who is logged in: its socket is the mail owner's (the node's user in
        # production), whose ``doveadm kick`` ends the sessions of a changed address
        # (anywhere/sessions.py).  Unprivileged (a node that is not root): nothing can
        # chroot, and every socket is the node's user's anyway.
        "service anvil {",
        *(["  chroot ="] if unprivileged else []),
        *(["  unix_listener anvil {", f"    user = {owner}", "    mode = 0600", "  }"]
          if owner is not None else []),
        "}",
        # Nothing but IMAP: no LMTP, POP3 or doveadm listeners on the network.
        "service lmtp {",
        "  unix_listener lmtp {",
        "    mode = 0600",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with ``text`` (readable by its owner only)."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def node_layout(settings: Settings) -> DovecotLayout:
    root = settings.state_dir.absolute() / "dovecot"
    return DovecotLayout(config=root / "dovecot.conf", lua=root / "mailplane-auth.lua",
                         base_dir=root / "run", state_dir=root / "state",
                         log=root / "dovecot.log")


class NodeDovecot(NodeProgram):
    """The node's own Dovecot (``[imap] run_dovecot``): configured under
    ``<state_dir>/dovecot/``, started with the node, stopped by its PID."""

    def __init__(self, settings: Settings, *, secret: str, cert: Path, key: Path) -> None:
        self._settings = settings
        self._secret = secret
        self._cert = cert.absolute()  # Dovecot reads it from its own working directory
        self._key = key.absolute()
        self.layout = node_layout(settings)

    def _prepare(self) -> list[str]:
        """Write the configuration (blocking); returns the command line."""
        layout = self.layout
        root = layout.config.parent
        root.mkdir(mode=0o700, exist_ok=True)
        users = accounts()
        if os.geteuid() == 0:
            # Dovecot's own users (login, internal, the mail owner) reach its sockets
            # through here: they may pass, never list (the state directory: the node).
            os.chmod(root, 0o711)
        assert layout.state_dir is not None
        layout.state_dir.mkdir(mode=0o700, exist_ok=True)
        write_private(layout.lua, render_lua(self._settings, self._secret))
        if os.geteuid() == 0:
            # Dovecot's auth process loads the script as its internal user: it holds the
            # login check's secret, so that group alone may read it.
            os.chown(layout.lua, 0, grp.getgrnam(users.internal_user).gr_gid)
            os.chmod(layout.lua, 0o640)
        write_private(layout.config, render_config(self._settings, layout, users,
                                                   cert=self._cert, key=self._key))
        return [self._settings.imap.dovecot_binary, "-F", "-c", str(layout.config)]

    async def start(self) -> None:
        argv = await asyncio.to_thread(self._prepare)
        imap = self._settings.imap
        assert self.layout.log is not None
        self._child = Child(
            "dovecot", argv, log_path=self.layout.log,
            pid_path=self.layout.config.parent / "dovecot.node.pid",
            listens=[(imap.host, imap.port), (imap.host, imap.tls_port)])
        await self._child.start()


def write_unit_config(settings: Settings, directory: Path, *, secret: str, cert: Path,
                      key: Path) -> list[Path]:
    """``mailplane imap-config``: the configuration of a Dovecot under its own service
    unit (Debian's dovecot.service with ``-c <directory>/dovecot.conf``): Dovecot's own
    run and state directories and syslog, mail served as the owner of the Maildirs.
    Blocking; returns the files written."""
    directory = directory.absolute()
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    layout = DovecotLayout(config=directory / "dovecot.conf",
                           lua=directory / "mailplane-auth.lua")
    try:
        info = settings.maildir_root.stat()
    except FileNotFoundError:
        info = settings.state_dir.stat()
    users = Accounts(info.st_uid, info.st_gid, "dovenull", "dovecot", "dovecot")
    write_private(layout.lua, render_lua(settings, secret))
    if os.geteuid() == 0:
        os.chown(layout.lua, 0, grp.getgrnam("dovecot").gr_gid)
        os.chmod(layout.lua, 0o640)
    write_private(layout.config, render_config(settings, layout, users, cert=cert.absolute(),
                                               key=key.absolute()), mode=0o644)
    return [layout.config, layout.lua]
