"""The files in ``deploy/`` that docs/operations.md tells an operator to copy are valid:
the systemd units pass ``systemd-analyze verify`` without a warning, and the example
configuration loads (every key known, every value valid)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailplane.config.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INSTALLED_BINARY = "/opt/mailplane/venv/bin/mailplane"


def test_the_systemd_units_verify_without_warnings(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The units name the documented install path; point them at this venv's command.
    command = str(Path(sys.executable).parent / "mailplane")
    units = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        text = unit.read_text(encoding="utf-8").replace(INSTALLED_BINARY, command)
        name = unit.name.replace("@.service", "@mx.service")
        (tmp_path / name).write_text(text, encoding="utf-8")
        units.append(f"./{name}")
    assert len(units) >= 4
    verified = subprocess.run([analyze, "verify", "--man=no", *units], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr


def test_the_example_production_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILPLANE_CONFIG", str(DEPLOY / "config" / "mailplane.toml"))
    settings = load_settings()
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.mx.port == 25 and settings.virus.engine == "clamd"
    assert settings.templates_dir.is_dir()  # the packaged templates
