"""A private Postfix instance for ``make bench`` (issue 13: the Postfix column).

What an ISP would run instead of mailplane: Debian's Postfix 3.7 with **no filters**,
accepting mail on a free loopback port and delivering every message with ``virtual(8)``
into a Maildir per recipient.  Everything lives in one directory that the bench made:

- ``etc/`` — ``config_directory``: ``main.cf``, ``master.cf`` (one ``smtpd`` on
  ``127.0.0.1:<port>``, every service ``chroot = n``), ``vmailbox`` (``texthash:`` map of
  the recipients the bench sends to, so no ``postmap`` step);
- ``spool/`` — ``queue_directory`` (root-owned; Postfix creates its subdirectories);
- ``data/`` — ``data_directory`` (owned by ``postfix``);
- ``mail/`` — ``virtual_mailbox_base`` (owned by ``nobody``, the virtual delivery uid);
- ``log/postfix.log`` — ``maillog_file`` through ``postlogd`` (production Postfix logs
  every message too; there is no syslog on the bench machines).

It is started with ``postfix -c etc start`` and stopped with ``postfix -c etc stop`` (the
master's PID, read from ``spool/pid/master.pid``, is killed as a fallback), so the system
instance (``/etc/postfix``, port 25) is never touched.  Nothing depends on DNS:
``smtp_host_lookup = native``, ``smtp_dns_support_level = disabled``,
``smtpd_peername_lookup = no``, ``myhostname`` set, empty ``mydestination``/``relayhost``.

Durability is Postfix's own: ``cleanup(8)`` fsyncs the queue file before ``smtpd`` sends
the 250, ``virtual(8)`` fsyncs each Maildir file before renaming it into ``new/``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"
DAEMON_DIRECTORY = "/usr/lib/postfix/sbin"
VIRTUAL_USER = "nobody"

# Every service a plain Postfix needs, none chrooted (the chroot would need copies of
# /etc files in the private queue directory).  The smtpd line is added per instance.
_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def unavailable_reason() -> str:
    """Why a private Postfix cannot run here, or "" if it can."""
    if not os.access(POSTFIX, os.X_OK) or not os.access(
            f"{DAEMON_DIRECTORY}/master", os.X_OK):
        return "Debian package postfix is not installed"
    if os.geteuid() != 0:
        return "postfix's master must be started as root (the bench is not root)"
    for user in ("postfix", VIRTUAL_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"user {user!r} does not exist"
    return ""


def version() -> str:
    proc = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"],
                          capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "?"


def maildir_of(address: str) -> str:
    """``virtual_mailbox_maps`` value for ``address``: ``<domain>/<local>/`` (a Maildir)."""
    local, _, domain = address.lower().partition("@")
    return f"{domain}/{local}/"


def write_config(root: Path, port: int, recipients: Iterable[str]) -> None:
    """Create ``root``'s directories and the instance's ``main.cf``/``master.cf``."""
    recipients = sorted({r.lower() for r in recipients})
    etc, spool, data, mail, log = (root / d for d in ("etc", "spool", "data", "mail", "log"))
    for path in (etc, spool, data, mail, log):
        path.mkdir(parents=True, exist_ok=True)
    postfix_user = pwd.getpwnam("postfix")
    virtual_user = pwd.getpwnam(VIRTUAL_USER)
    os.chmod(root, 0o755)
    os.chmod(spool, 0o755)
    os.chown(data, postfix_user.pw_uid, postfix_user.pw_gid)
    os.chown(mail, virtual_user.pw_uid, virtual_user.pw_gid)
    domains = sorted({r.partition("@")[2] for r in recipients})
    (etc / "vmailbox").write_text("".join(f"{r} {maildir_of(r)}\n" for r in recipients))
    (etc / "main.cf").write_text(f"""\
# Private bench instance (bench/postfix.py); not the system Postfix.
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.example
mydomain = bench.example
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
relayhost =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_banner = $myhostname ESMTP
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtp_host_lookup = native
lmtp_host_lookup = native
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
virtual_mailbox_domains = {" ".join(domains)}
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_mailbox_base = {mail}
virtual_uid_maps = static:{virtual_user.pw_uid}
virtual_gid_maps = static:{virtual_user.pw_gid}
virtual_mailbox_limit = 0
maillog_file = {log}/postfix.log
maillog_file_prefixes = {log}
""")
    (etc / "master.cf").write_text(
        f"127.0.0.1:{port} inet n - n - - smtpd\n" + _MASTER_CF)


def _master_pid(root: Path) -> int | None:
    try:
        return int((root / "spool" / "pid" / "master.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class PostfixInstance:
    root: Path
    port: int
    recipients: list[str]
    master_pid: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    def _postfix(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([POSTFIX, "-c", str(self.etc), *argv], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start(self) -> None:
        write_config(self.root, self.port, self.recipients)
        proc = self._postfix("start", timeout=120)
        pid = _master_pid(self.root)
        if proc.returncode != 0 or pid is None:
            self.kill()
            raise RuntimeError(f"postfix -c {self.etc} start failed ({proc.returncode}): "
                               f"{(proc.stderr + proc.stdout)[-2000:]}")
        self.master_pid = pid

    def new_dirs(self) -> list[Path]:
        mail = self.root / "mail"
        return [mail / maildir_of(r) / "new" for r in self.recipients]

    def delivered(self) -> int:
        """Messages in every recipient's ``new/`` (a missing Maildir counts 0)."""
        total = 0
        for path in self.new_dirs():
            with contextlib.suppress(FileNotFoundError):
                total += len(os.listdir(path))
        return total

    def clear_maildirs(self) -> None:
        """Remove delivered files (outside any timed section), so counts start at 0."""
        for path in self.new_dirs():
            try:
                names = os.listdir(path)
            except FileNotFoundError:
                continue
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path / name)

    def wait_delivered(self, expected: int, timeout: float = 120.0,
                       interval: float = 0.002) -> float:
        """Poll until ``expected`` files are in the Maildirs; the monotonic time they
        were all there (raises TimeoutError with the count seen)."""
        deadline = time.perf_counter() + timeout
        while True:
            now = time.perf_counter()
            seen = self.delivered()
            if seen >= expected:
                return now
            if now > deadline:
                raise TimeoutError(f"{seen} of {expected} messages in the Maildirs after "
                                   f"{timeout:.0f}s")
            time.sleep(interval)

    def stop(self) -> None:
        if not self.master_pid:
            return
        tree = [self.master_pid, *_descendants(self.master_pid)]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._postfix("stop", timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(self.master_pid):
            time.sleep(0.05)
        self.kill(tree)
        self.master_pid = 0

    def kill(self, pids: list[int] | None = None) -> None:
        """SIGKILL the master and the processes that were its children (by PID only)."""
        if pids is None:
            pid = self.master_pid or _master_pid(self.root)
            pids = [pid, *_descendants(pid)] if pid else []
        for pid in pids:
            if _alive(pid) and _is_postfix(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2:].split()[0] != "Z"


def _is_postfix(pid: int) -> bool:
    """Still a Postfix daemon (not a process that reused the PID)."""
    try:
        return os.readlink(f"/proc/{pid}/exe").startswith(DAEMON_DIRECTORY + "/")
    except OSError:
        return False


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
