"""Quarantine schemas (SPEC §4, §11)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


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
    body_preview: str
