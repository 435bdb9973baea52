"""Build the configured engines (SPEC §3, §4: the scanner and the verdict are hooks).

Services call these once at start-up and ``aclose()`` the engines on shutdown.
"""

from __future__ import annotations

from mailplane.config.sections import SpamConfig, VirusConfig
from mailplane.filters.engines.base import SpamEngine, VirusEngine
from mailplane.filters.engines.builtin_spam import BuiltinSpamEngine
from mailplane.filters.engines.builtin_virus import BuiltinVirusEngine
from mailplane.filters.engines.clamd import ClamdEngine
from mailplane.filters.engines.command import CommandEngine
from mailplane.filters.engines.rspamd import RspamdEngine
from mailplane.filters.engines.spamd import SpamdEngine


def build_virus_engine(settings: VirusConfig) -> VirusEngine:
    """The engine named by ``virus.engine``; ``ConfigError`` if its settings are incomplete."""
    if settings.engine == "clamd":
        return ClamdEngine(settings)
    if settings.engine == "command":
        return CommandEngine(settings)
    return BuiltinVirusEngine()


def build_spam_engine(settings: SpamConfig) -> SpamEngine:
    """The engine named by ``spam.engine``."""
    if settings.engine == "spamd":
        return SpamdEngine(settings)
    if settings.engine == "rspamd":
        return RspamdEngine(settings)
    return BuiltinSpamEngine(settings)
