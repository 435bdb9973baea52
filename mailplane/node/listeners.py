"""Node-level listener plumbing (SPEC §8a): the file-descriptor budget of the process, the
event loop's error reports, and the API listener's gate.

- :func:`fit_connection_limits` — raises the soft ``RLIMIT_NOFILE`` to the hard limit and,
  if the listeners' ``max_connections`` together (plus a reserve for the database pool,
  Maildir files and scanner sockets) still do not fit, lowers them in proportion and says
  so: a flood then meets ``421``/``-ERR``/503 from the gates instead of EMFILE, and every
  listener keeps serving.
- :func:`gated_http_protocol` — uvicorn's HTTP protocol behind a
  :class:`~mailplane.net.limits.ConnectionLimiter`: over a limit, ``503`` with
  ``Retry-After`` and close; a connection that sends no request within
  ``api.greeting_deadline_seconds`` is closed (uvicorn itself would keep it for ever).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from mailplane import metrics
from mailplane.config.settings import Settings
from mailplane.net.gate import Admission, peer_ip_of
from mailplane.net.limits import ConnectionLimiter, Refusal
from mailplane.net.throttled_log import ThrottledLog

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: Descriptors kept for everything but client connections (database pool, files being
#: written, clamd/spamd/DNS sockets, log files).
FD_RESERVE = 128
#: Never scale a listener below this many sessions.
MIN_CONNECTIONS = 8

_SECTIONS = {"mx": "mx", "submission": "submission", "pop3": "pop3", "api": "api"}


def raise_fd_limit() -> int:
    """Lift the soft descriptor limit to the hard one; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d: %s", soft, exc)
    return int(soft)


def fit_connection_limits(settings: Settings, roles: tuple[str, ...],
                          fd_limit: int) -> Settings:
    """``settings`` with every serving listener's ``max_connections`` scaled down so that
    together they fit ``fd_limit`` (minus :data:`FD_RESERVE`); unchanged if they fit."""
    serving = [name for name in _SECTIONS if name in roles]
    wanted = {name: int(getattr(settings, name).max_connections) for name in serving}
    total = sum(wanted.values())
    budget = max(fd_limit - FD_RESERVE, MIN_CONNECTIONS * max(len(serving), 1))
    if total <= budget:
        return settings
    updates: dict[str, Any] = {}
    for name, value in wanted.items():
        scaled = max(MIN_CONNECTIONS, value * budget // total)
        section = getattr(settings, name)
        updates[name] = section.model_copy(update={"max_connections": scaled})
        log.warning("%s.max_connections lowered from %d to %d: the process may open %d "
                    "descriptors (raise the limit, e.g. LimitNOFILE, to keep %d)",
                    name, value, scaled, fd_limit, value)
    return settings.model_copy(update=updates)


_API_REFUSAL_BODY = json.dumps({"error": {
    "code": "too_many_connections",
    "message": "Too many connections; try again later",
    "field": None,
}}).encode()
API_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Retry-After: 5\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    + f"Content-Length: {len(_API_REFUSAL_BODY)}\r\n\r\n".encode()
    + _API_REFUSAL_BODY
)


def gated_http_protocol(limiter: ConnectionLimiter,
                        first_request_seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``Config(http=...)``) behind ``limiter``."""
    base: Any = AutoHTTPProtocol

    class GatedHTTPProtocol(base, Admission):  # type: ignore[misc]
        _refused = False
        _first_request: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            ip = peer_ip_of(transport)
            decision = limiter.admit(ip)
            if isinstance(decision, Refusal):
                self._refused = True
                _throttled.warning(("api", decision), "api: refused a connection from %s"
                                   " (%s; %d open)", ip, decision.value, limiter.active)
                writable: Any = transport  # uvloop's are no asyncio.Transport subclasses
                writable.write(API_REFUSAL)
                writable.close()
                return
            self.bind_admission(decision)
            super().connection_made(transport)
            self._first_request = asyncio.get_running_loop().call_later(
                first_request_seconds, self._no_request_in_time)

        def _no_request_in_time(self) -> None:
            self._first_request = None
            if getattr(self, "cycle", None) is None and not self.transport.is_closing():
                metrics.LIMIT_REFUSALS.labels("api", "greeting_deadline").inc()
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def eof_received(self) -> Any:
            return None if self._refused else super().eof_received()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            if self._first_request is not None:
                self._first_request.cancel()
                self._first_request = None
            self.release_admission()
            super().connection_lost(exc)

    return GatedHTTPProtocol
