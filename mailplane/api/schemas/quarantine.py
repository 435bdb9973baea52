"""Quarantine schemas (SPEC §4, §11)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from mailplane.api.schemas.common import StrictModel


class QuarantineItemOut(BaseModel):
    id: str
    received_at: datetime
    sender: str
    header_from: str
    subject: str
    reason: str = Field(description="Why it was quarantined: spam, deny (the deny list), "
                                    "spoofed (なりすまし: a forged sender, SPEC §8b) or "
                                    "moved (the customer put it into the 迷惑メール folder "
                                    "with an IMAP client or the webmail, SPEC §9b).")
    size: int
    expires_at: datetime


class QuarantineList(BaseModel):
    address: str
    items: list[QuarantineItemOut]


class QuarantineHeader(BaseModel):
    name: str
    value: str


class QuarantineDetailOut(QuarantineItemOut):
    headers: list[QuarantineHeader]
    body_preview: str = Field(
        description="the text part (line ends as \\n), or the text of the HTML part")
    body_html: str | None = Field(
        default=None,
        description="the HTML part, sanitised: no script, no style, no remote content (images"
                    " as [alt text], links as text with their target); show it in a sandboxed"
                    " frame. null when the message has no HTML part")
    html_images_hidden: int = Field(default=0, description="images not shown in body_html")
    html_links_disarmed: int = Field(default=0, description="links shown as text in body_html")


class QuarantineDeleteMany(StrictModel):
    """Several quarantined messages of one address deleted at once (the list's 選択削除)."""

    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=200)


class QuarantineDeleted(BaseModel):
    deleted: int = Field(description="how many of the ids were deleted now (the others were"
                                     " already gone)")
