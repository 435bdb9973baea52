"""SPEC §3: the external command hook — exit 0 clean, 1 infected, anything else unavailable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mailplane.config.sections import VirusConfig
from mailplane.config.settings import ConfigError
from mailplane.filters.engines.base import ScannerUnavailable
from mailplane.filters.engines.command import CommandEngine
from tests.factories.daemons import EICAR
from tests.factories.messages import eicar_base64_attachment, ordinary_message

SCANNER = """\
import os, sys, time
mode = sys.argv[1]
data = sys.stdin.buffer.read()
with open(sys.argv[2], "w") as pidfile:
    pidfile.write(str(os.getpid()))
if mode == "crash":
    sys.stderr.write("scanner: database is corrupt\\n")
    sys.exit(2)
if mode == "hang":
    time.sleep(60)
if EICAR in data:
    print("Test.EICAR")
    print("second line is ignored")
    sys.exit(1)
sys.exit(0)
"""


def _engine(tmp_path: Path, mode: str, timeout: float = 10.0) -> CommandEngine:
    script = tmp_path / "scanner.py"
    script.write_text(f"EICAR = {EICAR!r}\n" + SCANNER)
    argv = [sys.executable, str(script), mode, str(tmp_path / "scanner.pid")]
    return CommandEngine(VirusConfig(engine="command", command=argv, timeout_seconds=timeout))


async def test_exit_zero_is_clean(tmp_path: Path) -> None:
    result = await _engine(tmp_path, "scan").scan(ordinary_message())
    assert not result.infected


async def test_exit_one_is_infected_with_first_stdout_line_as_signature(tmp_path: Path) -> None:
    result = await _engine(tmp_path, "scan").scan(EICAR)
    assert result.infected
    assert result.signature == "Test.EICAR"


async def test_large_input_is_streamed_through_stdin(tmp_path: Path) -> None:
    result = await _engine(tmp_path, "scan").scan(b"x" * (2 * 1024 * 1024) + EICAR)
    assert result.infected


async def test_crash_is_scanner_unavailable_with_exit_status_and_stderr(tmp_path: Path) -> None:
    with pytest.raises(ScannerUnavailable, match="exit status 2: scanner: database is corrupt"):
        await _engine(tmp_path, "crash").scan(eicar_base64_attachment())


async def test_timeout_kills_the_scanner_and_is_scanner_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ScannerUnavailable, match=r"did not finish within 1\.5 s"):
        await _engine(tmp_path, "hang", timeout=1.5).scan(ordinary_message())
    pid = int((tmp_path / "scanner.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_missing_program_is_scanner_unavailable(tmp_path: Path) -> None:
    engine = CommandEngine(
        VirusConfig(engine="command", command=[str(tmp_path / "no-such-scanner")])
    )
    with pytest.raises(ScannerUnavailable, match="cannot start"):
        await engine.scan(EICAR)


def test_empty_command_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"virus\.command"):
        CommandEngine(VirusConfig(engine="command", command=[]))
