"""Real clamd and spamd daemons for tests (non-negotiable "real daemons where asked").

``start_clamd(dir)`` / ``start_spamd(dir)`` start a private daemon on a temporary unix socket
or free loopback port and return a handle; ``stop()`` / ``kill()`` end it by its own PID
(process group), never by name.  Both skip the test, with the reason, when the binary is not
installed (Debian: ``clamav-daemon`` for clamd; ``spamd`` + ``spamassassin`` for spamd).

clamd gets no downloaded database: its database directory holds one ``.ndb`` body signature
of the EICAR string, which clamd also finds inside base64/quoted-printable MIME attachments
after its own mail decoding.  spamd runs with ``-L`` (local tests only, no network) on the
rules Debian ships in /usr/share/spamassassin, which include GTUBE.

``start_rspamd(dir)`` starts a private rspamd (Debian: ``rspamd``) whose only filter is its
DKIM check, resolving through its own DNS stub (:class:`~tests.factories.dns.DnsStub`,
``daemon.dns``) — the independent verifier of what mailplane signs (SPEC §8b).  Its
public-suffix list is a short file of our test TLDs: compiling Debian's full list took
rspamd over a minute at every start.

Session-scoped fixtures ``clamd_daemon``, ``spamd_daemon`` and ``rspamd_daemon`` share one
daemon per session;
register them once with ``pytest_plugins = ["tests.factories.daemons"]`` in the root conftest (or
import them into a folder's conftest).  A test that stops or kills a daemon must start its
own with ``start_clamd``/``start_spamd``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import pytest

from tests.factories.dns import DnsStub

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
#: clamd reports signatures from a non-official database with this suffix.
CLAMD_EICAR_SIGNATURE = "Eicar-Test-Signature.UNOFFICIAL"

CLAMD_BINARIES = ("/usr/sbin/clamd", "clamd")
RSPAMD_BINARIES = ("/usr/bin/rspamd", "rspamd")
SPAMD_BINARIES = ("/usr/sbin/spamd", "spamd")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find_binary(candidates: tuple[str, ...], package: str) -> str:
    for candidate in candidates:
        found = shutil.which(candidate) if "/" not in candidate else candidate
        if found and os.access(found, os.X_OK):
            return found
    pytest.skip(f"{candidates[-1]} is not installed (Debian package: {package})")


@dataclass
class _Daemon:
    """A daemon we started, in its own process group so its children end with it."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    cleanup_dirs: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL if it has not exited in time."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
        self._signal(signal.SIGKILL)  # leftover children of a daemon that exited
        self._remove_dirs()

    def kill(self) -> None:
        """SIGKILL at once: the daemon "dies" without closing anything cleanly."""
        self._signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)

    def pause(self) -> None:
        """SIGSTOP: the socket still accepts connections but nothing answers (a hang)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def _remove_dirs(self) -> None:
        for path in self.cleanup_dirs:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until(self, answers: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.returncode} before "
                    f"answering {what}; log:\n{self.log_text()[-3000:]}"
                )
            if answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not answer {what} within {START_TIMEOUT:g} s; "
            f"log:\n{self.log_text()[-3000:]}"
        )


@dataclass
class ClamdDaemon(_Daemon):
    socket_path: Path = Path()
    port: int = 0
    host: str = "127.0.0.1"

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect(str(self.socket_path))
                sock.sendall(b"zPING\0")
                return sock.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def virus_settings(
        self, *, tcp: bool = False, timeout_seconds: float = 10.0
    ) -> dict[str, object]:
        """The ``virus`` settings section pointing at this daemon."""
        return {
            "engine": "clamd",
            "clamd_socket": "" if tcp else str(self.socket_path),
            "clamd_host": self.host,
            "clamd_port": self.port,
            "timeout_seconds": timeout_seconds,
        }


@dataclass
class SpamdDaemon(_Daemon):
    port: int = 0
    host: str = "127.0.0.1"
    pidfile: Path = Path()

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2.0) as sock:
                sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return b"PONG" in sock.recv(64)
        except OSError:
            return False

    def spam_settings(self, *, timeout_seconds: float = 15.0) -> dict[str, object]:
        """The ``spam`` settings section pointing at this daemon."""
        return {
            "engine": "spamd",
            "spamd_host": self.host,
            "spamd_port": self.port,
            "timeout_seconds": timeout_seconds,
        }


@dataclass
class RspamdDaemon(_Daemon):
    port: int = 0
    host: str = "127.0.0.1"
    #: The DNS server rspamd asks (always given by :func:`start_rspamd`).
    dns: DnsStub | None = None

    def stop(self) -> None:
        super().stop()
        if self.dns is not None:
            self.dns.close()

    def publish(self, records: dict[str, list[str]]) -> None:
        """TXT records (``{name: [text, ...]}``) in rspamd's DNS."""
        assert self.dns is not None
        for name, texts in records.items():
            self.dns.zone.setdefault(name.lower().rstrip("."), {})["TXT"] = list(texts)

    def ping(self) -> bool:
        try:
            return httpx.get(f"http://{self.host}:{self.port}/ping", timeout=2.0).text \
                .strip() == "pong"
        except httpx.HTTPError:
            return False

    def check(self, message: bytes, *, ip: str = "203.0.113.25", helo: str = "mx.example.net",
              mail_from: str = "", rcpt: str = "someone@dest.test") -> dict[str, list[str]]:
        """rspamd's symbols for ``message`` (``{symbol: options}``), as an MX would ask
        (/checkv2 with the client IP, HELO and envelope; RFC-style headers)."""
        headers = {"IP": ip, "Helo": helo, "From": mail_from or "<>", "Rcpt": rcpt}
        answer = httpx.post(f"http://{self.host}:{self.port}/checkv2", content=message,
                            headers=headers, timeout=30.0)
        answer.raise_for_status()
        symbols = answer.json()["symbols"]
        return {name: list(value.get("options") or []) for name, value in symbols.items()}


RSPAMD_CONFIG = """\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    filters = "dkim";
    cache_file = "$DBDIR/symbols.cache";
    url_tld = "{tld_file}";
    local_addrs = [];
    allow_raw_input = true;
    control_socket = "$DBDIR/rspamd.sock mode=0600";
    dns {{
        nameserver = ["{dns_host}:{dns_port}"];
        timeout = 1s;
        retransmits = 2;
    }}
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
"""
#: Keys are looked up afresh for every message: tests reuse selector names with new keys.
RSPAMD_DKIM_CONFIG = "dkim_cache_expire = 1s;\ncheck_local = true;\ncheck_authed = true;\n"


def start_rspamd(directory: Path) -> RspamdDaemon:
    """Start rspamd (DKIM checks only, DNS from its own stub) on a free loopback port."""
    binary = _find_binary(RSPAMD_BINARIES, "rspamd")
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("local.d", "db", "run"):
        (directory / sub).mkdir(exist_ok=True)
    (directory / "tld.dat").write_text("com\nnet\norg\njp\ntest\nexample\n")
    (directory / "local.d" / "dkim.conf").write_text(RSPAMD_DKIM_CONFIG)
    dns = DnsStub().start()
    port = _free_port()
    config = directory / "rspamd.conf"
    config.write_text(RSPAMD_CONFIG.format(tld_file=directory / "tld.dat", dns_host=dns.host,
                                           dns_port=dns.port, port=port))
    argv = [binary, "-f", "-c", str(config), "--var", "CONFDIR=/etc/rspamd",
            "--var", f"LOCAL_CONFDIR={directory}", "--var", f"DBDIR={directory / 'db'}",
            "--var", f"RUNDIR={directory / 'run'}", "--var", f"LOGDIR={directory}"]
    if os.geteuid() == 0:
        argv.append("-i")  # a private loopback instance: let its workers run as root
    with open(directory / "rspamd.stderr", "wb") as stderr:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr,
                                   stderr=stderr, start_new_session=True, cwd=directory)
    daemon = RspamdDaemon(name="rspamd", process=process, log_path=directory / "rspamd.log",
                          port=port, dns=dns)
    try:
        daemon._wait_until(daemon.ping, "/ping")
    except RuntimeError:
        dns.close()
        raise
    return daemon


def _short_dir(directory: Path, prefix: str) -> tuple[Path, list[Path]]:
    """A directory whose socket path fits in sun_path (pytest's tmp paths can be long)."""
    if len(str(directory / "clamd.sock")) <= _UNIX_PATH_MAX:
        return directory, []
    short = Path(tempfile.mkdtemp(prefix=prefix))
    return short, [short]


def start_clamd(directory: Path, *, stream_max_length: str = "25M") -> ClamdDaemon:
    """Start clamd with an EICAR-only database in ``directory``; wait until it answers PING."""
    binary = _find_binary(CLAMD_BINARIES, "clamav-daemon")
    directory.mkdir(parents=True, exist_ok=True)
    socket_dir, cleanup = _short_dir(directory, "mpclamd-")
    database = directory / "db"
    database.mkdir(exist_ok=True)
    (database / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
    socket_path = socket_dir / "clamd.sock"
    port = _free_port()
    log_path = directory / "clamd.log"
    config = directory / "clamd.conf"
    config.write_text(
        "\n".join(
            [
                f"LocalSocket {socket_path}",
                f"TCPSocket {port}",
                "TCPAddr 127.0.0.1",
                "Foreground yes",
                f"DatabaseDirectory {database}",
                f"TemporaryDirectory {directory}",
                f"LogFile {log_path}",
                f"PidFile {directory / 'clamd.pid'}",
                f"StreamMaxLength {stream_max_length}",
                "MaxThreads 4",
                "SelfCheck 3600",
                "",
            ]
        )
    )
    with open(directory / "clamd.stderr", "wb") as stderr:
        process = subprocess.Popen(
            [binary, "--config-file", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
    daemon = ClamdDaemon(
        name="clamd",
        process=process,
        log_path=log_path,
        cleanup_dirs=cleanup,
        socket_path=socket_path,
        port=port,
    )
    daemon._wait_until(daemon.ping, "PING")
    return daemon


def start_spamd(directory: Path) -> SpamdDaemon:
    """Start ``spamd -L`` on a free loopback port; wait until it answers PING."""
    binary = _find_binary(SPAMD_BINARIES, "spamd")
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = directory / "spamd.log"
    pidfile = directory / "spamd.pid"
    argv = [
        binary,
        "--local",  # no network tests (DNSBL, Razor, ...)
        "--nouser-config",
        "--listen",
        f"127.0.0.1:{port}",
        "--allowed-ips",
        "127.0.0.1",
        "--pidfile",
        str(pidfile),
        "--syslog",
        "stderr",
        "--max-children",
        "2",
        "--min-children",
        "1",
        "--min-spare",
        "1",
        "--max-spare",
        "1",
    ]
    if os.geteuid() == 0:
        argv += ["--username", "nobody"]  # spamd refuses to run its children as root
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=directory,
        )
    daemon = SpamdDaemon(
        name="spamd", process=process, log_path=log_path, port=port, pidfile=pidfile
    )
    daemon._wait_until(daemon.ping, "PING")
    return daemon


class _Shared:
    """One daemon per kind per session, however many conftests import the fixtures.

    Each conftest that imports a fixture registers its own copy of it; the reference count
    makes every copy hand out the same daemon and the last one to finish stop it.
    """

    def __init__(self) -> None:
        self.daemons: dict[str, _Daemon] = {}
        self.users: dict[str, int] = {}

    @contextlib.contextmanager
    def use(self, kind: str, start: Callable[[], _Daemon]) -> Iterator[_Daemon]:
        if kind not in self.daemons:
            self.daemons[kind] = start()
        self.users[kind] = self.users.get(kind, 0) + 1
        try:
            yield self.daemons[kind]
        finally:
            self.users[kind] -= 1
            if self.users[kind] == 0:
                self.daemons.pop(kind).stop()


_SHARED = _Shared()


@pytest.fixture(scope="session")
def clamd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdDaemon]:
    """One clamd for the session; do not stop or pause it (use ``start_clamd`` for that)."""
    with _SHARED.use("clamd", lambda: start_clamd(tmp_path_factory.mktemp("clamd"))) as daemon:
        assert isinstance(daemon, ClamdDaemon)
        yield daemon


@pytest.fixture(scope="session")
def rspamd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RspamdDaemon]:
    """One rspamd for the session; tests add the records they need to its ``dns.zone``."""
    with _SHARED.use("rspamd", lambda: start_rspamd(tmp_path_factory.mktemp("rspamd"))
                     ) as daemon:
        assert isinstance(daemon, RspamdDaemon)
        yield daemon


@pytest.fixture(scope="session")
def spamd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpamdDaemon]:
    """One spamd for the session; do not stop it (use ``start_spamd`` for that)."""
    with _SHARED.use("spamd", lambda: start_spamd(tmp_path_factory.mktemp("spamd"))) as daemon:
        assert isinstance(daemon, SpamdDaemon)
        yield daemon
