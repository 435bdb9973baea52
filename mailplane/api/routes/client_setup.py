"""Mail client setup (issue 16): the per-address settings for the portal's setup screen and
the profile download (signed in), and the two discovery calls mail programs make on their
own (public: they answer for any address of our domains without saying whether it exists).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from mailplane.api.client_setup import (
    MAX_AUTODISCOVER_BYTES,
    AutodiscoverRequestError,
    autoconfig_xml,
    autodiscover_address,
    autodiscover_xml,
    endpoints,
    hosted_domain,
    mobileconfig,
    provider,
)
from mailplane.api.deps import AddressScopeDep, SettingsDep
from mailplane.api.errors import ApiError, not_found

router = APIRouter(prefix="/v1/contracts/{cn}/addresses/{address}/client-setup",
                   tags=["client setup"])
discovery = APIRouter(tags=["client setup"])

XML = "application/xml"


class ServerSetting(BaseModel):
    protocol: str
    host: str
    port: int
    security: str
    recommended: bool = False


class ClientSetup(BaseModel):
    address: str
    username: str
    provider: str
    servers: list[ServerSetting]


@router.get("", response_model=ClientSetup)
def client_setup(scope: AddressScopeDep, settings: SettingsDep) -> ClientSetup:
    """What to type into a mail program: user name = the POP account (SPEC §1); IMAP
    (recommended) where it is offered, and POP3."""
    return ClientSetup(
        address=scope.address.address, username=scope.address.pop_account,
        provider=provider(settings),
        servers=[ServerSetting(protocol=e.protocol, host=e.host, port=e.port,
                               security=e.security, recommended=e.recommended)
                 for e in endpoints(settings)],
    )


@router.get(".mobileconfig", response_class=Response,
            responses={200: {"content": {"application/x-apple-aspen-config": {}}}})
def apple_profile(scope: AddressScopeDep, settings: SettingsDep) -> Response:
    body = mobileconfig(settings, address=scope.address.address,
                        username=scope.address.pop_account)
    filename = f"{scope.address.address.replace('@', '_at_')}.mobileconfig"
    return Response(body, media_type="application/x-apple-aspen-config",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _domain_or_404(address: str, settings: SettingsDep) -> str:
    domain = hosted_domain(address, settings)
    if domain is None:
        raise not_found("no mail service for this domain")
    return domain


@discovery.get("/.well-known/autoconfig/mail/config-v1.1.xml", response_class=Response)
@discovery.get("/mail/config-v1.1.xml", response_class=Response, include_in_schema=False)
def thunderbird_autoconfig(
    settings: SettingsDep,
    emailaddress: Annotated[str, Query(max_length=320)],
) -> Response:
    domain = _domain_or_404(emailaddress, settings)
    return Response(autoconfig_xml(settings, domain), media_type=XML)


@discovery.post("/autodiscover/autodiscover.xml", response_class=Response)
@discovery.post("/Autodiscover/Autodiscover.xml", response_class=Response,
                include_in_schema=False)
async def outlook_autodiscover(request: Request, settings: SettingsDep) -> Response:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_AUTODISCOVER_BYTES:
            raise ApiError(413, "too_large", "the request is too large")
    try:
        address = autodiscover_address(bytes(body))
    except AutodiscoverRequestError:
        raise ApiError(400, "bad_request", "send an Autodiscover request with EMailAddress"
                       ) from None
    _domain_or_404(address, settings)
    return Response(autodiscover_xml(settings, address.lower()), media_type=XML)
