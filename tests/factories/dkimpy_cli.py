"""dkimpy's own command-line verifiers (``dkimverify``, ``arcverify``) as separate processes,
resolving through a loopback DNS stub: the independent check that what mailplane signs
verifies (SPEC §8b, non-negotiable 8).

dkimpy looks keys up with dnspython's default resolver; the only thing this wrapper adds
is pointing that resolver at the stub (``python -m tests.factories.dkimpy_cli HOST:PORT
dkimverify --index 1 < message``), then it runs the tool's own ``main()`` unchanged.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import dns.resolver

from tests.factories.dns import DnsStub

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("dkimverify", "arcverify")


def run_tool(dns: DnsStub, tool: str, message: bytes,
             *args: str) -> subprocess.CompletedProcess[str]:
    """Run dkimpy's ``tool`` on ``message`` in a new Python process."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.factories.dkimpy_cli", f"{dns.host}:{dns.port}", tool,
         *args], input=message, capture_output=True, cwd=REPO, timeout=60, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode("utf-8", "replace"),
                                       done.stderr.decode("utf-8", "replace"))


def dkimverify(dns: DnsStub, message: bytes, index: int) -> subprocess.CompletedProcess[str]:
    """dkimpy's ``dkimverify --index N``: exit 0 and "signature ok" when it verifies."""
    return run_tool(dns, "dkimverify", message, "--index", str(index))


def arcverify(dns: DnsStub, message: bytes) -> subprocess.CompletedProcess[str]:
    """dkimpy's ``arcverify``: prints ``arc verification: cv=<pass|fail|none> …``."""
    return run_tool(dns, "arcverify", message)


def main() -> None:
    host, _, port = sys.argv[1].rpartition(":")
    tool = sys.argv[2]
    if tool not in TOOLS:
        raise SystemExit(f"unknown tool {tool}")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    dns.resolver.default_resolver = resolver
    sys.argv = [tool, *sys.argv[3:]]
    importlib.import_module(f"dkim.{tool}").main()


if __name__ == "__main__":
    main()
