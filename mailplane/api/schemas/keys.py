"""API key schemas (SPEC §10-§11)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from mailplane.api.schemas.common import StrictModel


class ApiKeyCreate(StrictModel):
    role: Literal["operator", "portal", "customer"]
    contract: str | None = Field(default=None, description="customer number (customer keys)")
    address: str | None = Field(default=None, description="mailbox scope (customer keys)")
    label: str = Field(default="", max_length=100)


class ApiKeyCreated(BaseModel):
    key_id: str
    role: str
    contract: str | None
    address: str | None
    api_key: str = Field(description="shown once; only its hash is stored")
