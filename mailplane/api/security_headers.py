"""Response headers that keep browsers from misusing what the API and the portal serve
(issue 15).

The portal keeps a bearer key in ``sessionStorage``, so injected script would be a stolen
key: its pages get a strict Content-Security-Policy — scripts and styles only from the
portal's own files, no inline script, no plugins, no ``<base>``, never framed
(clickjacking) — plus ``nosniff`` and no ``Referer``.  API responses (which carry
passwords and keys shown once) are never stored by a cache and never rendered as a page.
The interactive docs at ``/docs`` load their script from a CDN and are left without a CSP.

Redirects never take their host from the request (issue 20): Starlette builds the
``Location`` of its slash redirects (``/portal`` → ``/portal/``) from the ``Host`` header,
so ``Host: evil.example`` sent a browser — or a cache in front of us — to
``http://evil.example/portal/``.  mailplane never redirects to another site, so every
``Location`` leaves here relative (RFC 9110 §10.2.2 allows it), and never as ``//host``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PORTAL_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_BY_PREFIX: list[tuple[str, list[tuple[bytes, bytes]]]] = [
    ("/portal", [(b"content-security-policy", PORTAL_CSP.encode())]),
    ("/v1/", [(b"content-security-policy", API_CSP.encode()),
              (b"cache-control", b"no-store")]),
]


def relative_location(value: bytes) -> bytes:
    """``value`` as a path on this site: scheme and host dropped, and leading slashes or
    backslashes folded into one, so the result can never name another host."""
    text = value.decode("latin-1")
    parts = urlsplit(text)
    if not (parts.scheme or parts.netloc or text.startswith(("//", "/\\", "\\"))):
        return value  # already relative: a path on this site
    path = "/" + parts.path.lstrip("/\\")
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return (path + query + fragment).encode("latin-1")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = list(_COMMON)
        for prefix, headers in _BY_PREFIX:
            if path.startswith(prefix):
                extra += headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(name, relative_location(value) if name.lower() == b"location"
                            else value) for name, value in message.get("headers", [])]
                present = {name.lower() for name, _ in headers}
                message["headers"] = [*headers, *(h for h in extra if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
