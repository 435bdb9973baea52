"""The reference customer portal ("My Page", 001 L3788-4677) served at ``/portal/``.

Plain HTML, CSS and ES modules that call only the public management API (SPEC §11): the
customer signs in like on My Page (``POST /v1/session``: customer number and contract
password, or mail address and POP password) and the page then works with the session cookie
and its CSRF token, in the customer's language (``Accept-Language``), so an ISP can adopt the
page as it is or copy its calls.  Nothing here touches the database: the page is a client of
the API like any other portal (SPEC §10).  No inline script, handler or style attribute: the
page runs under ``script-src 'self'; style-src 'self'``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
PORTAL_PATH = "/portal"


def mount_portal(app: FastAPI) -> None:
    """Serve the portal's static files at ``/portal/`` (``index.html`` for the folder)."""
    app.mount(PORTAL_PATH, StaticFiles(directory=STATIC_DIR, html=True), name="portal")
