"""Fixtures of the reliability suite: the whole-node factory from ``tests/e2e``."""

from __future__ import annotations

from tests.e2e.conftest import node_factory
from tests.outbound.conftest import make_outbound_env

__all__ = ["make_outbound_env", "node_factory"]
