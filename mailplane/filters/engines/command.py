"""External command virus engine: the "command hook" of SPEC §3.

The configured argv (``virus.command``) is run without a shell with the data on stdin.  The
contract is the one of most command-line scanners: exit 0 = clean, exit 1 = infected with the
signature name on the first stdout line; any other exit, a crash, or no answer within
``virus.timeout_seconds`` means the scanner could not answer (:class:`ScannerUnavailable`) —
never "clean".  A process that overruns the timeout is killed and reaped, not left behind.
"""

from __future__ import annotations

import asyncio
import contextlib

from mailplane.config.sections import VirusConfig
from mailplane.config.settings import ConfigError
from mailplane.filters.engines.base import ScannerUnavailable, VirusScanResult

EXIT_CLEAN = 0
EXIT_INFECTED = 1


class CommandEngine:
    """Pipes the data into ``virus.command`` and reads the verdict from its exit status."""

    name = "command"

    def __init__(self, settings: VirusConfig) -> None:
        if not settings.command:
            raise ConfigError("config key 'virus.command': must name the scanner command")
        self._argv = list(settings.command)
        self._timeout = settings.timeout_seconds

    async def scan(self, data: bytes) -> VirusScanResult:
        program = self._argv[0]
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise ScannerUnavailable(
                f"virus command {program} cannot start: {exc.strerror or exc}"
            ) from None
        try:
            async with asyncio.timeout(self._timeout):
                stdout, stderr = await process.communicate(data)
        except TimeoutError:
            await _kill(process)
            raise ScannerUnavailable(
                f"virus command {program} did not finish within {self._timeout:g} s"
            ) from None
        except BaseException:
            await _kill(process)
            raise
        if process.returncode == EXIT_CLEAN:
            return VirusScanResult(infected=False)
        if process.returncode == EXIT_INFECTED:
            return VirusScanResult(infected=True, signature=_first_line(stdout) or "unknown")
        detail = _first_line(stderr)
        raise ScannerUnavailable(
            f"virus command {program} failed with exit status {process.returncode}"
            + (f": {detail}" if detail else "")
        )

    async def aclose(self) -> None:
        return None


def _first_line(output: bytes) -> str:
    lines = output.decode("utf-8", "replace").strip().splitlines()
    return lines[0].strip()[:200] if lines else ""


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()
