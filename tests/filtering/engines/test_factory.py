"""SPEC §3, §4: the configured engine name picks the engine behind each hook."""

from __future__ import annotations

import sys

from mailplane.config.sections import SpamConfig, VirusConfig
from mailplane.filters.engines.builtin_spam import BuiltinSpamEngine
from mailplane.filters.engines.builtin_virus import BuiltinVirusEngine
from mailplane.filters.engines.clamd import ClamdEngine
from mailplane.filters.engines.command import CommandEngine
from mailplane.filters.engines.factory import build_spam_engine, build_virus_engine
from mailplane.filters.engines.rspamd import RspamdEngine
from mailplane.filters.engines.spamd import SpamdEngine


def test_virus_engine_names_pick_their_engines() -> None:
    assert isinstance(build_virus_engine(VirusConfig()), BuiltinVirusEngine)
    assert isinstance(build_virus_engine(VirusConfig(engine="clamd")), ClamdEngine)
    command = VirusConfig(engine="command", command=[sys.executable, "-c", "pass"])
    assert isinstance(build_virus_engine(command), CommandEngine)


async def test_spam_engine_names_pick_their_engines() -> None:
    assert isinstance(build_spam_engine(SpamConfig()), BuiltinSpamEngine)
    assert isinstance(build_spam_engine(SpamConfig(engine="spamd")), SpamdEngine)
    rspamd = build_spam_engine(SpamConfig(engine="rspamd"))
    assert isinstance(rspamd, RspamdEngine)
    await rspamd.aclose()
