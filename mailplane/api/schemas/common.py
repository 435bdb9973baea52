"""Shared pieces of the API schemas."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is a 422 and not silently ignored."""

    model_config = ConfigDict(extra="forbid")
