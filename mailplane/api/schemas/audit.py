"""Audit log schema (SPEC §9)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    address: str | None
    detail: dict[str, object]


class AuditPage(BaseModel):
    contract: str
    entries: list[AuditEntry]
