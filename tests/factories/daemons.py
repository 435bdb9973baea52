"""Real clamd and spamd daemons for tests (non-negotiable "real daemons where asked").

``start_clamd(dir)`` / ``start_spamd(dir)`` start a private daemon on a temporary unix socket
or free loopback port and return a handle; ``stop()`` / ``kill()`` end it by its own PID
(process group), never by name.  Both skip the test, with the reason, when the binary is not
installed (Debian: ``clamav-daemon`` for clamd; ``spamd`` + ``spamassassin`` for spamd).

clamd gets no downloaded database: its database directory holds one ``.ndb`` body signature
of the EICAR string, which clamd also finds inside base64/quoted-printable MIME attachments
after its own mail decoding.  spamd runs with ``-L`` (local tests only, no network) on the
rules Debian ships in /usr/share/spamassassin, which include GTUBE.

Session-scoped fixtures ``clamd_daemon`` and ``spamd_daemon`` share one daemon per session;
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

import pytest

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
#: clamd reports signatures from a non-official database with this suffix.
CLAMD_EICAR_SIGNATURE = "Eicar-Test-Signature.UNOFFICIAL"

CLAMD_BINARIES = ("/usr/sbin/clamd", "clamd")
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
def spamd_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpamdDaemon]:
    """One spamd for the session; do not stop it (use ``start_spamd`` for that)."""
    with _SHARED.use("spamd", lambda: start_spamd(tmp_path_factory.mktemp("spamd"))) as daemon:
        assert isinstance(daemon, SpamdDaemon)
        yield daemon
