"""The reference customer portal ("My Page", 001 L3788-4677) served at ``/portal/``.

Plain HTML, CSS and ES modules that call only the public management API (SPEC §11) with the
customer's bearer key, so an ISP can adopt the page as it is or copy its calls.  Nothing here
touches the database: the page is a client of the API like any other portal (SPEC §10).
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
