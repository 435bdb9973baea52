"""The MTA-STS policy (RFC 8461 §3.2) at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``.

The API serves it for ``Host: mta-sts.<base domain>`` (and a customer subdomain of one)
behind the operator's HTTPS front end, which must hold a certificate for that name
(docs/operations.md §4.3); any other host gets 404, never a redirect
(§3.3: senders must not follow one).  Public, like the autoconfig documents.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from mailplane.api.deps import SettingsDep
from mailplane.api.errors import not_found
from mailplane.net.mta_sts import POLICY_PATH, policy_domain, policy_text

router = APIRouter(tags=["mail transport security"])


# ``response_class=Response``: the error answers stay JSON in the schema (SPEC §11).
@router.get(POLICY_PATH, response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "the policy (RFC 8461 §3.2)"}})
def mta_sts_policy(request: Request, settings: SettingsDep) -> Response:
    """This platform's MTA-STS policy: mode, MX hosts, max_age (``[mta_sts]``)."""
    if policy_domain(request.headers.get("host", ""), settings.base_domains) is None:
        raise not_found()
    return PlainTextResponse(policy_text(settings), media_type="text/plain")
