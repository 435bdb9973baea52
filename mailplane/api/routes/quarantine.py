"""Quarantine list/show/release/delete (SPEC §4, §11)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/contracts/{cn}/addresses/{address}/quarantine",
                   tags=["quarantine"])
