"""Admission control: what the management API accepts before doing any work for a request
(SPEC §8a "API request body size; concurrent API requests per key and unauthenticated
requests per IP"; issue 15).  Every limit is a setting under ``[api]``, every refusal a
clear temporary answer with ``Retry-After`` and a count in
``mailplane_api_refusals{reason}`` (docs/security.md).

- **Body size** (:class:`AdmissionMiddleware`, ``api.max_body_bytes``): a ``Content-Length``
  over the limit is refused with 413 before a byte of the body is read; a chunked body is
  counted as it streams and refused when it passes the limit.
- **Bodies without credentials**: a ``/v1`` request with a body but neither an
  ``Authorization`` nor a ``Cookie`` header is refused with 401 before its body is read
  (FastAPI reads a body before it resolves the dependencies that check the key).
- **Unauthenticated requests per IP** (``api.max_unauthenticated_per_ip``): a ``/v1``
  request counts against its client IP from arrival until its key is verified; more get
  429.  So one address cannot fill the queue below with bogus keys or slow bodies.
- **Database turns** (:meth:`Admission.database_turn`, ``api.max_concurrent_requests``):
  a request holds a turn for as long as it holds a database session.  The API's own pool
  has two connections per turn (a quarantine call uses two), so no thread ever waits for
  a connection — before, 40 threads waited on 15 connections while the sessions holding
  them waited for a thread to close them, until the pool timeout answered 500.  A request
  waits for a turn on the event loop (no thread), FIFO, at most
  ``api.queue_timeout_seconds``, then gets 503.
- **Concurrent requests per key** (:meth:`Admission.key_slot`,
  ``api.max_concurrent_per_key``): a verified customer key beyond its share gets 429;
  operator and portal keys (one portal key speaks for every customer) are bounded only by
  the database turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailplane.api.errors import ApiError, error_body
from mailplane.api.language import request_language
from mailplane.config.sections import ApiConfig
from mailplane.i18n import Text, translate
from mailplane.metrics import API_REFUSALS, API_REQUESTS_ACTIVE, API_REQUESTS_WAITING

#: ``/v1`` paths that take a body from a caller without credentials (a sign-in form).
#: Calls whose body *is* the credentials: the portal's sign-in (customer number and
#: contract password, or address and POP password) and the password recovery (customer
#: number, then the mailed code).  Their bodies are small and still bounded by
#: ``api.max_body_bytes``; the sign-in is throttled like POP3, the recovery per IP and
#: per customer number (``api/throttle.py``).
PUBLIC_BODY_PATHS: frozenset[str] = frozenset({"/v1/session", "/v1/recovery",
                                               "/v1/recovery/verify"})
API_PREFIX = "/v1/"
_TICKET = "mailplane.unauthenticated_ticket"
#: Seconds a refused client should wait: the limits are about requests in flight, which
#: finish in milliseconds, so "soon" is the honest answer.
RETRY_AFTER = "1"


def too_busy() -> ApiError:
    return ApiError(503, "busy", "the service is busy; retry shortly",
                    headers={"Retry-After": RETRY_AFTER})


class Admission:
    """The per-process counters behind the limits (one per app; used on its event loop)."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._turns = asyncio.Semaphore(config.max_concurrent_requests)
        self._per_key: dict[str, int] = {}
        self._per_ip: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def database_turn(self) -> AsyncIterator[None]:
        """Hold one of ``max_concurrent_requests`` turns; wait for it at most
        ``queue_timeout_seconds`` (503 after that)."""
        API_REQUESTS_WAITING.inc()
        try:
            await asyncio.wait_for(self._turns.acquire(), self.config.queue_timeout_seconds)
        except TimeoutError:
            API_REFUSALS.labels("busy").inc()
            raise too_busy() from None
        finally:
            API_REQUESTS_WAITING.dec()
        API_REQUESTS_ACTIVE.inc()
        try:
            yield
        finally:
            API_REQUESTS_ACTIVE.dec()
            self._turns.release()

    @contextlib.contextmanager
    def key_slot(self, key_id: str) -> Iterator[None]:
        """One of the key's ``max_concurrent_per_key`` slots, or 429 at once."""
        if self._per_key.get(key_id, 0) >= self.config.max_concurrent_per_key:
            API_REFUSALS.labels("per_key").inc()
            raise ApiError(429, "too_many_requests",
                           "too many requests with this key at once; retry shortly",
                           headers={"Retry-After": RETRY_AFTER})
        self._per_key[key_id] = self._per_key.get(key_id, 0) + 1
        try:
            yield
        finally:
            _decrement(self._per_key, key_id)

    def unauthenticated_ticket(self, ip: str) -> UnauthenticatedTicket | None:
        """Count a request against ``ip`` until it authenticates; None if over the limit."""
        if self._per_ip.get(ip, 0) >= self.config.max_unauthenticated_per_ip:
            return None
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return UnauthenticatedTicket(self._per_ip, ip)


class UnauthenticatedTicket:
    """A request's place in its IP's unauthenticated count; released once (when its key is
    verified, or when the request ends)."""

    def __init__(self, counts: dict[str, int], ip: str) -> None:
        self._counts = counts
        self._ip: str | None = ip

    def release(self) -> None:
        if self._ip is not None:
            _decrement(self._counts, self._ip)
            self._ip = None


def _decrement(counts: dict[str, int], name: str) -> None:
    left = counts.get(name, 0) - 1
    if left > 0:
        counts[name] = left
    else:
        counts.pop(name, None)


def authenticated(scope: Scope) -> None:
    """Called once the request's key is verified: it no longer counts against its IP."""
    ticket = scope.get(_TICKET)
    if isinstance(ticket, UnauthenticatedTicket):
        ticket.release()


class AdmissionMiddleware:
    """Body size, bodies without credentials, unauthenticated requests per IP (pure ASGI:
    it runs before anything reads the body)."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.admission.config.max_body_bytes
        length = headers.get("content-length")
        is_api = scope["path"].startswith(API_PREFIX)
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        if (is_api and has_body and scope["path"] not in PUBLIC_BODY_PATHS
                and "authorization" not in headers and "cookie" not in headers):
            await _refuse(scope, send, "body_without_credentials", 401, "unauthorized",
                          Text("sign-in required"), {"WWW-Authenticate": "Bearer"})
            return
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _refuse(scope, send, "body_too_large", 413, "too_large",
                          Text("the request body is larger than {limit} bytes", limit=limit))
            return
        ticket = None
        if is_api:
            client = scope.get("client")
            ticket = self.admission.unauthenticated_ticket(client[0] if client else "")
            if ticket is None:
                await _refuse(scope, send, "unauthenticated_per_ip", 429, "too_many_requests",
                              Text("too many requests from this address at once; retry"
                                   " shortly"), {"Retry-After": RETRY_AFTER})
                return
            scope[_TICKET] = ticket
        try:
            await self._counted(scope, receive, send, limit)
        finally:
            if ticket is not None:
                ticket.release()

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app, counting streamed body bytes; past ``limit`` the app is told the
        client left, its answer is dropped, and the client gets 413."""
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
        if exceeded and not started:
            await _refuse(scope, send, "body_too_large", 413, "too_large",
                          Text("the request body is larger than {limit} bytes", limit=limit))


async def _refuse(scope: Scope, send: Send, reason: str, status: int, code: str,
                  message: Text, headers: dict[str, str] | None = None) -> None:
    """A complete JSON error response (SPEC §11 shape, in the caller's language), closing
    the connection: the body that was not read must not be taken for the next request."""
    API_REFUSALS.labels(reason).inc()
    text = translate(message, request_language(Request(scope)))
    body = json.dumps(error_body(code, text)).encode()
    raw_headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
    raw_headers += [(name.lower().encode(), value.encode())
                    for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
