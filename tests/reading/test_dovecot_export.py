"""Dovecot on the same Maildir and credentials (SPEC §8): the exported passwd-file is read by a
real Dovecot 2.3, which logs a customer in with the POP password and serves the mail."""

from __future__ import annotations

import contextlib
import os
import poplib
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailplane.auth.passwords import PasswordHashing
from mailplane.config.settings import Settings
from mailplane.pop3.dovecot_export import export_passwd_file
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.migrate import upgrade
from tests.conftest import free_port
from tests.factories.pop3 import PASSWORD, add_address, deliver

ADDRESS = "taro_1@e06.example.net"
START_TIMEOUT = 30.0

DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
auth_failure_delay = 0
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
auth_username_format = %Lu
pop3_uidl_format = %f
mail_location = maildir:~
passdb {{
  driver = passwd-file
  args = scheme=ARGON2ID {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


@dataclass
class Dovecot:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_dovecot(root: Path, passwd: Path) -> Dovecot:
    binary = shutil.which("dovecot")
    if binary is None:
        pytest.skip("dovecot is not installed (Debian package: dovecot-pop3d)")
    port = free_port()
    for sub in ("run", "state"):
        (root / sub).mkdir()
    conf = root / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(root=root, passwd=passwd, port=port))
    process = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    daemon = Dovecot(process, port, root / "dovecot.log")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            log = daemon.log.read_text() if daemon.log.exists() else ""
            pytest.fail(f"dovecot exited with {process.returncode}: {stderr}\n{log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return daemon
        time.sleep(0.1)
    daemon.stop()
    pytest.fail("dovecot did not start listening in time")


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """Dovecot's own users must traverse to the Maildirs and passwd-file; pytest's tmp_path
    is private to root, so this test lives in a world-traversable directory."""
    root = Path(tempfile.mkdtemp(prefix="mailplane-dovecot-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.daemon
def test_dovecot_serves_the_maildir_with_the_exported_credentials(
    make_settings: Callable[..., Settings], shared_root: Path
) -> None:
    settings = make_settings(state_dir=str(shared_root / "var"))
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    session_factory = make_session_factory(engine)
    hashing = PasswordHashing(settings.security)
    pop_account = add_address(session_factory, hashing, ADDRESS)
    suspended = add_address(session_factory, hashing, "jiro_2@e06.example.net",
                            status="suspended")
    data = b"From: a@example.com\nSubject: via dovecot\n\n.dotted line\nbody\n"
    unique = deliver(settings, ADDRESS, data)

    # Mail is owned by an unprivileged user (Dovecot refuses uid 0) and exported as such.
    nobody = pwd.getpwnam("nobody")
    for directory, _, files in os.walk(settings.maildir_root):
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), nobody.pw_uid, nobody.pw_gid)
    passwd = shared_root / "passwd"
    written = export_passwd_file(settings, session_factory, passwd,
                                 uid=nobody.pw_uid, gid=nobody.pw_gid)
    engine.dispose()
    assert written == 4  # POP account and address for each of the two addresses
    line = next(x for x in passwd.read_text().splitlines() if x.startswith(pop_account + ":"))
    assert line.split(":")[1].startswith("{ARGON2ID}$argon2id$")
    passwd.chmod(0o644)  # the file is 640; Dovecot's auth user reads it here as "other"

    dovecot = start_dovecot(shared_root, passwd)
    try:
        client = poplib.POP3("127.0.0.1", dovecot.port, timeout=30)
        client.user(pop_account)
        client.pass_(PASSWORD)
        # pop3_uidl_format=%f gives the same UIDL as mailplane's POP3: no re-downloads.
        assert client.uidl()[1] == [f"1 {unique}".encode()]
        lines = client.retr(1)[1]
        assert b"Subject: via dovecot" in lines and b".dotted line" in lines
        client.quit()

        client = poplib.POP3("127.0.0.1", dovecot.port, timeout=30)
        client.user(ADDRESS.upper())
        client.pass_(PASSWORD)
        client.quit()

        for user, password in ((pop_account, "wrong-password"), (suspended, PASSWORD)):
            client = poplib.POP3("127.0.0.1", dovecot.port, timeout=30)
            client.user(user)
            with pytest.raises(poplib.error_proto, match=r"\[AUTH\]") as refused:
                client.pass_(password)
            client.close()
        assert b"suspended" in refused.value.args[0]  # the nologin reason of the last one
    finally:
        dovecot.stop()
