"""clamd client: the production virus engine (SPEC §3 "clamd over its socket (INSTREAM)").

A small client of our own instead of a library: the protocol is three commands.  We use the
NUL-terminated forms (``zINSTREAM``, ``zPING``); INSTREAM sends the data as chunks, each
prefixed by its length as a 4-byte big-endian integer, and a zero length ends the stream
(clamd(8), "INSTREAM").  Every failure — refused connection, timeout, an ``ERROR`` reply such
as "INSTREAM size limit exceeded" — raises :class:`ScannerUnavailable`, because a scanner that
cannot answer must never let mail pass silently; the caller applies ``on_error``.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from mailplane.config.sections import VirusConfig
from mailplane.filters.engines.base import ScannerUnavailable, VirusScanResult

CHUNK_SIZE = 64 * 1024
_MAX_REPLY = 64 * 1024


class ClamdEngine:
    """Scans with clamd over its unix socket (``clamd_socket``) or TCP (host, port)."""

    name = "clamd"

    def __init__(self, settings: VirusConfig) -> None:
        self._socket_path = settings.clamd_socket
        self._host = settings.clamd_host
        self._port = settings.clamd_port
        self._timeout = settings.timeout_seconds

    @property
    def address(self) -> str:
        """Where clamd is expected, for error messages and logs."""
        if self._socket_path:
            return f"unix:{self._socket_path}"
        return f"{self._host}:{self._port}"

    async def scan(self, data: bytes) -> VirusScanResult:
        reply = await self._converse(b"zINSTREAM\0", data)
        return parse_instream_reply(reply, self.address)

    async def ping(self) -> None:
        """Raise :class:`ScannerUnavailable` unless clamd answers ``PONG``."""
        reply = await self._converse(b"zPING\0", None)
        if reply != "PONG":
            raise ScannerUnavailable(f"clamd at {self.address} answered PING with {reply!r}")

    async def aclose(self) -> None:
        return None  # one connection per request: nothing is kept open

    async def _converse(self, command: bytes, stream: bytes | None) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                with await self._connect() as sock:
                    return await _exchange(sock, command, stream)
        except TimeoutError:
            raise ScannerUnavailable(
                f"clamd at {self.address} did not answer within {self._timeout:g} s"
            ) from None
        except OSError as exc:
            raise ScannerUnavailable(
                f"clamd at {self.address} is unreachable: {exc.strerror or exc}"
            ) from None

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        if self._socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = self._socket_path
        else:
            infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            target = (str(address[0]), int(address[1]))
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, target)
        except BaseException:
            sock.close()
            raise
        return sock


async def _exchange(sock: socket.socket, command: bytes, stream: bytes | None) -> str:
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, command)
        if stream is not None:
            view = memoryview(stream)
            for start in range(0, len(view), CHUNK_SIZE):
                chunk = view[start : start + CHUNK_SIZE]
                await loop.sock_sendall(sock, struct.pack(">I", len(chunk)) + chunk)
            await loop.sock_sendall(sock, struct.pack(">I", 0))
    except (BrokenPipeError, ConnectionResetError):
        # clamd stops reading when the stream exceeds StreamMaxLength and closes after
        # saying why; its reply (if it arrived) explains better than the broken pipe.
        pass
    raw = b""
    while not raw.endswith(b"\0") and len(raw) < _MAX_REPLY:
        try:
            more = await loop.sock_recv(sock, _MAX_REPLY - len(raw))
        except ConnectionResetError:
            if raw:
                break
            raise
        if not more:
            break
        raw += more
    if not raw:
        raise ConnectionResetError("clamd closed the connection without a reply")
    return raw.rstrip(b"\0").decode("utf-8", "replace").strip()


def parse_instream_reply(reply: str, address: str = "clamd") -> VirusScanResult:
    """``stream: OK`` → clean; ``stream: <Sig> FOUND`` → infected; anything else fails."""
    if reply.endswith("ERROR"):
        raise ScannerUnavailable(f"clamd at {address} reported an error: {reply}")
    body = reply.removeprefix("stream:").strip()
    if body == "OK":
        return VirusScanResult(infected=False)
    if body.endswith(" FOUND"):
        signature = body.removesuffix(" FOUND").strip()
        return VirusScanResult(infected=True, signature=signature or "unknown")
    raise ScannerUnavailable(f"clamd at {address} gave an unexpected reply: {reply[:200]!r}")
