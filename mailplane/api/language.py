"""Which language an API answer speaks (SPEC §10-§11).

``Accept-Language`` decides when it names Japanese or English.  Without one, a request made
with a portal session cookie, or to the portal's own sign-in calls, gets
``portal.language`` (Japanese: the customers of My Page read Japanese), and any other
request — an operator's script, an ISP integration with a bearer key — gets
``api.default_language`` (English by default, so the messages an integration logs stay
stable).
"""

from __future__ import annotations

from fastapi import Request

from mailplane.config.settings import Settings
from mailplane.i18n import negotiate

#: The portal's session cookie (:mod:`mailplane.api.web_session`).
SESSION_COOKIE = "mp_session"
#: Calls only the portal makes (sign-in, sign-out, password recovery).
PORTAL_PATHS = ("/v1/session", "/v1/recovery")


def request_language(request: Request) -> str:
    settings: Settings = request.app.state.settings
    portal = SESSION_COOKIE in request.cookies or request.url.path.startswith(PORTAL_PATHS)
    default = settings.portal.language if portal else settings.api.default_language
    return negotiate(request.headers.get("accept-language"), default)
