"""Which language an API answer speaks (SPEC §10-§11).

``Accept-Language`` decides when it names Japanese or English.  Without one, a request made
with a portal session cookie gets ``portal.language`` (Japanese: the customers of My Page
read Japanese), and any other request — an operator's script, an ISP integration with a
bearer key — gets ``api.default_language`` (English by default, so the messages an
integration logs stay stable).
"""

from __future__ import annotations

from fastapi import Request

from mailplane.config.settings import Settings
from mailplane.i18n import negotiate

#: The portal's session cookie (:mod:`mailplane.api.web_session`).
SESSION_COOKIE = "mp_session"


def request_language(request: Request) -> str:
    settings: Settings = request.app.state.settings
    default = (settings.portal.language if SESSION_COOKIE in request.cookies
               else settings.api.default_language)
    return negotiate(request.headers.get("accept-language"), default)
